"""Attention and transformer layers: scaled_dot_product_attention, the fused primitives
(packed self-attention, ndtr/GELU), MultiheadAttention and the Transformer layers.

Without PyTorch: shapes, mask semantics, causal masking, fully masked rows, the fused paths
against the composite, state_dict layouts, errors, and first and second derivatives in
float64 (reverse and forward mode). With PyTorch (skipped where it is absent): PyTorch's
state_dicts loaded into the chainrule modules, outputs and every gradient compared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule
import chainrule.nn.functional as NF
from chainrule import nn
from chainrule.errors import ShapeError
from chainrule.nn.attention import MultiheadAttention
from chainrule.nn.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    generate_square_subsequent_mask,
)
from chainrule.ops.attention import (
    attention,
    causal_bias,
    gelu,
    packed_self_attention,
    scaled_dot_product_attention,
)
from chainrule.primitives import REGISTRY
from chainrule.testing import gradcheck, gradgradcheck

sdpa = scaled_dot_product_attention
f64 = chainrule.float64


def _t(a, rg=False):
    return chainrule.tensor(np.asarray(a), requires_grad=rg)


def _np(t):
    return t.detach().numpy()


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------- sdpa: numpy reference
def _ref_sdpa(q, k, v, mask=None, causal=False, scale=None):
    """Plain NumPy float64 attention (mask: bool True = takes part, or float added)."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    L, S = s.shape[-2:]
    if causal:
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0))
    z = e.sum(-1, keepdims=True)
    p = np.where(z > 0, e / np.where(z > 0, z, 1), 0.0)
    return p @ v


def test_sdpa_matches_reference_with_masks_and_scale():
    r = _rng()
    q, k, v = r.standard_normal((2, 3, 4, 5)), r.standard_normal((2, 3, 6, 5)), \
        r.standard_normal((2, 3, 6, 7))
    bmask = r.random((4, 6)) > 0.3
    fmask = r.standard_normal((2, 1, 4, 6))
    for kw, ref in [({}, {}), ({"attn_mask": _t(bmask)}, {"mask": bmask}),
                    ({"attn_mask": _t(fmask)}, {"mask": fmask}),
                    ({"is_causal": True}, {"causal": True}),
                    ({"scale": 0.3}, {"scale": 0.3})]:
        out = sdpa(_t(q), _t(k), _t(v), **kw)
        assert out.shape == (2, 3, 4, 7)
        np.testing.assert_allclose(_np(out), _ref_sdpa(q, k, v, **ref), rtol=1e-10, atol=1e-12)


def test_sdpa_causal_equals_explicit_masks():
    r = _rng(1)
    q, k, v = (_t(r.standard_normal((2, 5, 4))) for _ in range(3))
    causal = sdpa(q, k, v, is_causal=True)
    tril = _t(np.tril(np.ones((5, 5), bool)))
    np.testing.assert_allclose(_np(causal), _np(sdpa(q, k, v, attn_mask=tril)), atol=1e-15)
    fmask = generate_square_subsequent_mask(5, dtype=f64)
    np.testing.assert_allclose(_np(causal), _np(sdpa(q, k, v, attn_mask=fmask)), atol=1e-15)


def test_causal_output_ignores_future_keys():
    r = _rng(2)
    q, k, v = (r.standard_normal((1, 6, 4)) for _ in range(3))
    out = _np(sdpa(_t(q), _t(k), _t(v), is_causal=True))
    k2, v2 = k.copy(), v.copy()
    k2[:, 4:] += 10.0
    v2[:, 4:] -= 3.0
    out2 = _np(sdpa(_t(q), _t(k2), _t(v2), is_causal=True))
    np.testing.assert_allclose(out[:, :4], out2[:, :4], atol=1e-14)
    assert not np.allclose(out[:, 4:], out2[:, 4:])


def test_fully_masked_rows_give_zeros_not_nan():
    r = _rng(3)
    q, k, v = (_t(r.standard_normal((1, 3, 4)), rg=True) for _ in range(3))
    mask = _t(np.array([[True, False, True], [False, False, False], [True, True, True]]))
    out = sdpa(q, k, v, attn_mask=mask)
    assert np.isfinite(_np(out)).all()
    np.testing.assert_array_equal(_np(out)[0, 1], 0.0)
    out.sum().backward()
    for x in (q, k, v):
        assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_array_equal(q.grad.numpy()[0, 1], 0.0)
    fmask = _t(np.where(mask.numpy(), 0.0, -np.inf))
    np.testing.assert_allclose(_np(sdpa(q, k, v, attn_mask=fmask)), _np(out), atol=1e-15)


def test_sdpa_enable_gqa_repeats_key_value_heads():
    r = _rng(4)
    q = r.standard_normal((2, 4, 3, 5))
    k, v = r.standard_normal((2, 2, 3, 5)), r.standard_normal((2, 2, 3, 5))
    out = sdpa(_t(q), _t(k), _t(v), enable_gqa=True)
    ref = _ref_sdpa(q, np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1))
    np.testing.assert_allclose(_np(out), ref, atol=1e-12)


def test_sdpa_dropout():
    q = _t(_rng(5).standard_normal((2, 4, 3)))
    np.testing.assert_array_equal(_np(sdpa(q, q, q, dropout_p=1.0)), 0.0)
    np.testing.assert_allclose(_np(sdpa(q, q, q, dropout_p=0.0)), _ref_sdpa(*(_np(q),) * 3))
    a = sdpa(q, q, q, dropout_p=0.5)
    b = sdpa(q, q, q, dropout_p=0.5)
    assert not np.allclose(_np(a), _np(b))


def test_sdpa_errors():
    q = chainrule.randn(2, 3, 4)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        sdpa(q, q, q, attn_mask=chainrule.ones(3, 3, dtype=chainrule.bool), is_causal=True)
    with pytest.raises(ShapeError, match="last"):
        sdpa(q, chainrule.randn(2, 3, 5), q)
    with pytest.raises(ShapeError, match="sequence"):
        sdpa(q, q, chainrule.randn(2, 4, 4))
    with pytest.raises(ShapeError, match="attn_mask of shape"):
        sdpa(q, q, q, attn_mask=chainrule.ones(4, 4, dtype=chainrule.bool))
    with pytest.raises(TypeError, match="one dtype"):
        sdpa(q, q.double(), q)
    with pytest.raises(TypeError, match="floating"):
        sdpa(chainrule.ones(3, 4, dtype=chainrule.int64), q, q)
    with pytest.raises(TypeError, match="bool or floating"):
        sdpa(q, q, q, attn_mask=chainrule.ones(3, 3, dtype=chainrule.int64))
    with pytest.raises(ValueError, match="dropout_p"):
        sdpa(q, q, q, dropout_p=1.5)
    with pytest.raises(ShapeError, match="at least 2"):
        sdpa(chainrule.randn(4), q, q)
    with pytest.raises(ShapeError, match="enable_gqa"):
        sdpa(chainrule.randn(1, 3, 2, 4), chainrule.randn(1, 2, 2, 4),
             chainrule.randn(1, 2, 2, 4), enable_gqa=True)


def test_sdpa_gradcheck_and_gradgradcheck():
    r = _rng(6)
    q, k, v = (_t(r.standard_normal(s), rg=True) for s in ((2, 3, 4), (2, 4, 4), (2, 4, 2)))
    fmask = _t(r.standard_normal((3, 4)), rg=True)
    bmask = _t(r.random((3, 4)) > 0.4)
    assert gradcheck(lambda q, k, v: sdpa(q, k, v, is_causal=True), (q, k, v))
    assert gradcheck(lambda q, k, v, m: sdpa(q, k, v, attn_mask=m), (q, k, v, fmask),
                     check_forward=True)
    assert gradgradcheck(lambda q, k, v: sdpa(q, k, v, attn_mask=bmask), (q, k, v))


# ---------------------------------------------------------------- GELU
def _gelu_ref(x):
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def test_gelu_float32_accuracy_and_exact_tails():
    x = np.concatenate([np.linspace(-9, 9, 20001), np.linspace(4, 6.5, 20001),
                        -np.linspace(4, 6.5, 20001)]).astype(np.float32)
    y = _np(gelu(_t(x)))
    assert y.dtype == np.float32
    x64 = x.astype(np.float64)
    # |error| <= 1.7e-7 |x| (the error of Phi), plus float32 rounding of the product
    assert np.all(np.abs(y - _gelu_ref(x64)) <= 1.7e-7 * np.abs(x64) + 6e-8 * np.abs(y))
    np.testing.assert_array_equal(y[x <= -5.501], 0.0)  # past 5.501: Phi exactly 0 and 1
    np.testing.assert_array_equal(y[x >= 5.501], x[x >= 5.501])
    e = _np(gelu(chainrule.tensor([-100.0, 100.0, float("inf"), float("nan"), 0.0])))
    assert e[0] == 0 and e[1] == 100 and e[2] == np.inf and np.isnan(e[3]) and e[4] == 0
    x2 = chainrule.tensor(np.linspace(-7, 7, 2001).astype(np.float32))
    np.testing.assert_allclose(_np(gelu(x2)), _np(NF.gelu(x2)), atol=2e-6)
    xd = chainrule.tensor(np.linspace(-7, 7, 201))
    np.testing.assert_allclose(_np(gelu(xd)), _gelu_ref(xd.numpy()), rtol=1e-13, atol=1e-15)
    assert gelu(x2, approximate="tanh").shape == x2.shape


def test_gelu_float32_gradient():
    x = np.concatenate([np.linspace(-8, 8, 4001), [0.0, 1e-35, -1e-38, 1e-45]])
    x32 = chainrule.tensor(x.astype(np.float32), requires_grad=True)
    g = _rng(7).standard_normal(x.shape).astype(np.float32)
    gelu(x32).backward(chainrule.tensor(g))
    x64 = x.astype(np.float32).astype(np.float64)
    phi = np.exp(-x64 * x64 / 2) / math.sqrt(2 * math.pi)
    ref = g * (_gelu_ref(x64) / np.where(x64 == 0, 1, x64) * (x64 != 0) + 0.5 * (x64 == 0)
               + x64 * phi)
    ref[-3:] = g[-3:] * 0.5  # Phi(0) for the tiny ones too
    np.testing.assert_allclose(x32.grad.numpy(), ref, rtol=2e-6, atol=5e-7)
    # a NaN in the same block does not spoil the tiny ones: NaN there, 1/2 at 0
    xn = chainrule.tensor(np.array([0.0, np.nan, 1e-30, 2.0], dtype=np.float32),
                          requires_grad=True)
    gelu(xn).sum().backward()
    gn = xn.grad.numpy()
    assert gn[0] == gn[2] == 0.5 and np.isnan(gn[1]) and abs(gn[3] - 1.0852) < 1e-4


def test_gelu_derivatives():
    x = _t(_rng(8).standard_normal(6) * 2, rg=True)
    assert gradcheck(gelu, (x,), check_forward=True)
    assert gradgradcheck(gelu, (x,), check_forward=True)
    gx = _t(_rng(9).standard_normal((2, 3)), rg=True)
    gg = _t(_rng(10).standard_normal((2, 3)), rg=True)
    assert gradcheck(lambda g, x: REGISTRY["gelu_backward"](g, x, gelu(x)), (gg, gx),
                     check_forward=True)


# ---------------------------------------------------------------- packed self-attention
def _composite_packed(qkv, heads, bias, seq_first):
    X = qkv.permute(1, 0, 2) if seq_first else qkv
    N, L, E3 = X.shape
    E = E3 // 3
    q, k, v = (X[..., i * E:(i + 1) * E].reshape(N, L, heads, E // heads).permute(0, 2, 1, 3)
               for i in range(3))
    out, _ = attention(q, k, v, bias)
    out = out.permute(0, 2, 1, 3).reshape(N, L, E)
    return out.permute(1, 0, 2) if seq_first else out


@pytest.mark.parametrize("seq_first", [False, True])
def test_packed_self_attention_matches_composite(seq_first):
    r = _rng(8)
    N, L, H, D = 3, 5, 2, 4
    shape = (L, N, 3 * H * D) if seq_first else (N, L, 3 * H * D)
    qkv = _t(r.standard_normal(shape), rg=True)
    g = r.standard_normal(shape[:2] + (H * D,))
    for bias in (None, causal_bias(L, L, np.dtype(np.float64), np),
                 r.standard_normal((N, 1, L, L))):
        out = packed_self_attention(qkv, H, bias, seq_first=seq_first)
        ref = _composite_packed(qkv, H, bias, seq_first)
        np.testing.assert_allclose(_np(out), _np(ref), atol=1e-14)
        (d1,) = chainrule.autograd.grad(out, qkv, _t(g))
        (d2,) = chainrule.autograd.grad(ref, qkv, _t(g))
        np.testing.assert_allclose(d1.numpy(), d2.numpy(), atol=1e-13)


def test_packed_self_attention_derivatives():
    r = _rng(9)
    qkv = _t(r.standard_normal((2, 4, 12)), rg=True)
    cb = causal_bias(4, 4, np.dtype(np.float64), np)
    bt = _t(r.standard_normal((2, 1, 4, 4)), rg=True)

    def f(x, b=None):
        return packed_self_attention(x, 2, cb if b is None else b)

    assert gradcheck(f, (qkv,), check_forward=True)
    assert gradgradcheck(f, (qkv,))
    assert gradcheck(f, (qkv, bt), check_forward=True)
    assert gradgradcheck(f, (qkv, bt))

    def fdrop(x):  # a fixed dropout mask: same generator seed at every call
        return packed_self_attention(x, 2, cb, dropout_p=0.3,
                                     generator=chainrule.Generator().manual_seed(3))

    assert gradcheck(fdrop, (qkv,), check_forward=True)
    assert gradgradcheck(fdrop, (qkv,))


def test_self_attention_primitive_whole_output_derivatives():
    """The raw primitive's two outputs, O and the weights P^T, both with random
    cotangents, and each alone (the other's cotangent None in the one vjp rule)."""
    prim = REGISTRY["self_attention"]
    r = _rng(11)
    qkv = _t(r.standard_normal((3, 2, 12)), rg=True)  # seq-first (L=3, N=2)
    bias = _t(r.standard_normal((2, 1, 3, 3)), rg=True)
    dmask = _t((r.random((2, 2, 3, 3)) > 0.3) * 1.5)

    def f(x, b):
        return prim(x, b, dmask, heads=2, scale=0.4, seq_first=True)

    o, pt = f(qkv, bias)
    assert o.shape == (3, 2, 4) and pt.shape == (2, 2, 3, 3)
    assert gradcheck(f, (qkv, bias), check_forward=True)
    assert gradgradcheck(f, (qkv, bias))
    for k in (0, 1):
        assert gradcheck(lambda x, b, k=k: f(x, b)[k], (qkv, bias), check_forward=True)
        assert gradgradcheck(lambda x, b, k=k: f(x, b)[k], (qkv, bias))


def test_packed_self_attention_float32_and_errors():
    r = _rng(10)
    qkv = chainrule.tensor(r.standard_normal((2, 6, 24)).astype(np.float32))
    out = packed_self_attention(qkv, 4, causal_bias(6, 6, np.dtype(np.float32), np))
    assert out.dtype == chainrule.float32 and out.shape == (2, 6, 8)
    ref = _composite_packed(qkv.double(), 4, causal_bias(6, 6, np.dtype(np.float64), np), False)
    np.testing.assert_allclose(_np(out), _np(ref), rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match="divisible"):
        packed_self_attention(chainrule.randn(2, 3, 10), 4)
    assert {"self_attention", "gelu", "gelu_backward"} <= set(REGISTRY)


# ---------------------------------------------------------------- MultiheadAttention
def test_mha_parameters_state_dict_and_init():
    m = MultiheadAttention(8, 2)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                    "out_proj.bias"]
    assert m.in_proj_weight.shape == (24, 8) and m.in_proj_bias.shape == (24,)
    np.testing.assert_array_equal(_np(m.in_proj_bias), 0.0)
    np.testing.assert_array_equal(_np(m.out_proj.bias), 0.0)
    bound = math.sqrt(6 / (24 + 8))  # xavier_uniform_ on (3E, E)
    w = m.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    m2 = MultiheadAttention(8, 2, bias=False, add_bias_kv=True, kdim=5, vdim=3)
    assert list(m2.state_dict()) == ["q_proj_weight", "k_proj_weight", "v_proj_weight",
                                     "bias_k", "bias_v", "out_proj.weight"]
    assert m2.k_proj_weight.shape == (8, 5) and m2.v_proj_weight.shape == (8, 3)
    assert m2.bias_k.shape == (1, 1, 8)
    assert m2.in_proj_weight is None and m2.in_proj_bias is None


@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_shapes_and_weights(batch_first):
    m = MultiheadAttention(8, 2, batch_first=batch_first)
    x = chainrule.randn(3, 5, 8)
    kv = chainrule.randn(3, 7, 8) if batch_first else chainrule.randn(7, 5, 8)
    out, w = m(x, kv, kv)
    n, L, S = (3, 5, 7) if batch_first else (5, 3, 7)
    assert out.shape == x.shape and w.shape == (n, L, S)
    np.testing.assert_allclose(_np(w).sum(-1), 1.0, rtol=1e-5)
    out, w = m(x, kv, kv, average_attn_weights=False)
    assert w.shape == (n, 2, L, S)
    out2, none = m(x, kv, kv, need_weights=False)
    assert none is None
    np.testing.assert_allclose(_np(out2), _np(out), rtol=1e-5, atol=1e-6)
    # unbatched
    u, wu = m(chainrule.randn(5, 8), chainrule.randn(7, 8), chainrule.randn(7, 8))
    assert u.shape == (5, 8) and wu.shape == (5, 7)


def test_mha_fast_path_equals_composite_path():
    m = MultiheadAttention(8, 2, batch_first=True).double()
    x = chainrule.tensor(_rng(11).standard_normal((3, 5, 8)), requires_grad=True)
    mask = generate_square_subsequent_mask(5, dtype=f64)
    kpm = _t(np.array([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]]))
    for kw in ({}, {"attn_mask": mask}, {"attn_mask": mask, "is_causal": True},
               {"key_padding_mask": kpm}, {"attn_mask": mask, "key_padding_mask": kpm}):
        fast, _ = m(x, x, x, need_weights=False, **kw)
        slow, _ = m(x, x, x, need_weights=True, **kw)
        np.testing.assert_allclose(_np(fast), _np(slow), atol=1e-14)
        (gf,) = chainrule.autograd.grad(fast.sum(), x)
        (gs,) = chainrule.autograd.grad(slow.sum(), x)
        np.testing.assert_allclose(gf.numpy(), gs.numpy(), atol=1e-13)


def test_mha_masks():
    m = MultiheadAttention(4, 2, batch_first=True).double()
    r = _rng(12)
    q, kv = _t(r.standard_normal((2, 3, 4))), r.standard_normal((2, 5, 4))
    kpm = np.array([[False, False, False, True, True], [False] * 5])
    out = _np(m(q, _t(kv), _t(kv), key_padding_mask=_t(kpm))[0])
    kv2 = kv.copy()
    kv2[0, 3:] += 5.0  # padded keys/values do not matter
    out2 = _np(m(q, _t(kv2), _t(kv2), key_padding_mask=_t(kpm))[0])
    np.testing.assert_allclose(out, out2, atol=1e-14)
    # bool (True = masked) and float (-inf) masks agree; 3-D per-head masks work
    am = r.random((3, 5)) > 0.6
    am[:, 0] = False
    fb = m(q, _t(kv), _t(kv), attn_mask=_t(am))[0]
    ff = m(q, _t(kv), _t(kv), attn_mask=_t(np.where(am, -np.inf, 0.0)))[0]
    np.testing.assert_allclose(_np(fb), _np(ff), atol=1e-14)
    am3 = np.broadcast_to(am, (4, 3, 5))
    np.testing.assert_allclose(_np(m(q, _t(kv), _t(kv), attn_mask=_t(am3))[0]), _np(fb),
                               atol=1e-14)
    # a query with every key masked gives the out-projection bias (zero attention)
    allm = np.zeros((3, 5), bool)
    allm[1] = True
    o, w = m(q, _t(kv), _t(kv), attn_mask=_t(allm))
    np.testing.assert_allclose(_np(o)[:, 1], np.broadcast_to(_np(m.out_proj.bias), (2, 4)))
    np.testing.assert_array_equal(_np(w)[:, 1], 0.0)


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(6, 4)
    m = MultiheadAttention(4, 2)
    x = chainrule.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match="need attn_mask"):
        m(x, x, x, is_causal=True)
    with pytest.raises(ShapeError, match="2D attn_mask"):
        m(x, x, x, attn_mask=chainrule.zeros(2, 2))
    with pytest.raises(ShapeError, match="3D attn_mask"):
        m(x, x, x, attn_mask=chainrule.zeros(3, 3, 3))
    with pytest.raises(ShapeError, match="key_padding_mask"):
        m(x, x, x, key_padding_mask=chainrule.zeros(3, 2, dtype=chainrule.bool))
    with pytest.raises(ShapeError, match="unbatched 2D or batched 3D"):
        m(chainrule.randn(1, 3, 2, 4), x, x)
    with pytest.raises(ShapeError, match="features"):
        m(chainrule.randn(3, 2, 5), x, x)
    with pytest.raises(ShapeError, match="batch dim"):
        m(x, chainrule.randn(3, 1, 4), chainrule.randn(3, 1, 4))


def test_mha_options_run_and_train():
    m = MultiheadAttention(8, 2, dropout=0.5, add_bias_kv=True, add_zero_attn=True, kdim=6,
                           vdim=5, batch_first=True)
    q, k, v = chainrule.randn(2, 3, 8), chainrule.randn(2, 4, 6), chainrule.randn(2, 4, 5)
    kpm = chainrule.tensor([[False, False, True, True], [False] * 4])
    out, w = m(q, k, v, key_padding_mask=kpm)
    assert out.shape == (2, 3, 8) and w.shape == (2, 3, 6)  # 4 keys + bias_kv + zero attn
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    a, b = m(q, k, v)[0], m(q, k, v)[0]
    np.testing.assert_array_equal(_np(a), _np(b))


def test_mha_gradcheck_and_gradgradcheck():
    m = MultiheadAttention(4, 2, batch_first=True).double()
    x = _t(_rng(13).standard_normal((2, 3, 4)), rg=True)
    mask = generate_square_subsequent_mask(3, dtype=f64)

    def fast(x):
        return m(x, x, x, attn_mask=mask, need_weights=False)[0]

    assert gradcheck(fast, (x,))
    assert gradgradcheck(fast, (x,))
    assert gradgradcheck(lambda x: m(x, x, x, attn_mask=mask)[1], (x,))
    y = _t(_rng(14).standard_normal((2, 4, 4)), rg=True)
    assert gradgradcheck(lambda x, y: m(x, y, y, need_weights=False)[0], (x, y))


# ---------------------------------------------------------------- transformer layers
ENC_KEYS = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
            "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
            "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]


def test_encoder_layer_keys_shapes_and_causality():
    layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True,
                                    norm_first=True, activation="gelu").double()
    assert list(layer.state_dict()) == ENC_KEYS
    x = _rng(15).standard_normal((2, 6, 8))
    mask = generate_square_subsequent_mask(6, dtype=f64)
    y = _np(layer(_t(x), src_mask=mask, is_causal=True))
    assert y.shape == (2, 6, 8)
    x2 = x.copy()
    x2[:, 4:] += 3.0
    y2 = _np(layer(_t(x2), src_mask=mask, is_causal=True))
    np.testing.assert_allclose(y[:, :4], y2[:, :4], atol=1e-13)
    assert not np.allclose(y[:, 4:], y2[:, 4:])
    # is_causal=True with the mask equals the mask alone
    np.testing.assert_allclose(_np(layer(_t(x), src_mask=mask)), y, atol=1e-13)
    with pytest.raises(RuntimeError, match="relu/gelu"):
        TransformerEncoderLayer(8, 2, activation="tanh")


def test_encoder_stack_copies_norm_and_causal_detection():
    layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
    enc = TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(8))
    keys = list(enc.state_dict())
    assert keys[:12] == ["layers.0." + k for k in ENC_KEYS]
    assert keys[12:24] == ["layers.1." + k for k in ENC_KEYS]
    assert keys[24:] == ["norm.weight", "norm.bias"]
    p0 = enc.layers[0].linear1.weight
    assert p0 is not enc.layers[1].linear1.weight and p0 is not layer.linear1.weight
    np.testing.assert_array_equal(_np(p0), _np(enc.layers[1].linear1.weight))
    x = chainrule.randn(5, 2, 8)
    mask = generate_square_subsequent_mask(5)
    y = enc(x, mask=mask)  # the causal mask is detected (is_causal=None)
    np.testing.assert_allclose(_np(y), _np(enc(x, mask=mask, is_causal=True)), atol=1e-6)
    np.testing.assert_allclose(_np(y).mean(-1), 0.0, atol=1e-5)  # final LayerNorm
    from chainrule.nn.transformer import _detect_is_causal_mask

    assert _detect_is_causal_mask(mask, None, 5)
    assert _detect_is_causal_mask(chainrule.tensor(np.triu(np.ones((5, 5), bool), 1)), None, 5)
    assert not _detect_is_causal_mask(chainrule.zeros(5, 5), None, 5)
    assert not _detect_is_causal_mask(None, None, 5)


def test_decoder_and_transformer_keys_and_shapes():
    dec_layer = TransformerDecoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    keys = list(dec_layer.state_dict())
    assert keys[:4] == ["self_attn." + k for k in ("in_proj_weight", "in_proj_bias",
                                                   "out_proj.weight", "out_proj.bias")]
    assert keys[4:8] == ["multihead_attn." + k for k in ("in_proj_weight", "in_proj_bias",
                                                         "out_proj.weight", "out_proj.bias")]
    assert keys[8:] == ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
                        "norm3.weight", "norm3.bias"]
    dec = TransformerDecoder(dec_layer, 2)
    tgt, mem = chainrule.randn(2, 4, 8), chainrule.randn(2, 6, 8)
    mask = generate_square_subsequent_mask(4)
    assert dec(tgt, mem, tgt_mask=mask).shape == (2, 4, 8)
    model = Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True)
    assert model(chainrule.randn(2, 6, 8), tgt, tgt_mask=mask).shape == (2, 4, 8)
    assert "encoder.norm.weight" in model.state_dict()
    assert "decoder.layers.0.multihead_attn.in_proj_weight" in model.state_dict()
    with pytest.raises(RuntimeError, match="batch number"):
        model(chainrule.randn(3, 6, 8), tgt)


def test_encoder_layer_train_mode_dropout_and_backward():
    layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.5, batch_first=True)
    x = chainrule.randn(2, 5, 8)
    mask = generate_square_subsequent_mask(5)
    a = layer(x, src_mask=mask, is_causal=True)
    b = layer(x, src_mask=mask, is_causal=True)
    assert not np.allclose(_np(a), _np(b))
    a.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    layer.eval()
    np.testing.assert_array_equal(_np(layer(x)), _np(layer(x)))


def test_encoder_layer_gradgradcheck():
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, batch_first=True,
                                    activation="gelu", norm_first=True).double()
    x = _t(_rng(16).standard_normal((1, 3, 4)), rg=True)
    mask = generate_square_subsequent_mask(3, dtype=f64)
    assert gradcheck(lambda x: layer(x, src_mask=mask, is_causal=True), (x,))
    assert gradgradcheck(lambda x: layer(x, src_mask=mask, is_causal=True), (x,))


# ---------------------------------------------------------------- against PyTorch
def _load(m, tm, torch):
    """PyTorch's state_dict into the chainrule module (checks that keys and shapes match)."""
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict({k: chainrule.from_numpy(v.detach().numpy().copy())
                       for k, v in tm.state_dict().items()})


def _compare(m, tm, torch, args, targs, outs=lambda o: o, tol=None, seed=0):
    """Forward values, the gradient of every floating input and of every parameter."""
    tol = tol or {"rtol": 1e-10, "atol": 1e-12}
    y, ty = outs(m(*args[0], **args[1])), outs(tm(*targs[0], **targs[1]))
    np.testing.assert_allclose(_np(y), ty.detach().numpy(), **tol)
    g = _rng(seed).standard_normal(ty.shape).astype(ty.detach().numpy().dtype)
    y.backward(chainrule.tensor(g))
    ty.backward(torch.tensor(g))
    for a, ta in zip(args[0], targs[0]):
        if isinstance(a, chainrule.Tensor) and a.requires_grad:
            np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), **tol)
    tp = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), **tol,
                                   err_msg=name)


def _pair(a, torch, rg=True):
    return (chainrule.tensor(a, requires_grad=rg and a.dtype.kind == "f"),
            torch.tensor(a, requires_grad=rg and a.dtype.kind == "f"))


def test_sdpa_against_torch(torch):
    import torch.nn.functional as tF

    r = _rng(20)
    q, k, v = r.standard_normal((2, 4, 5, 8)), r.standard_normal((2, 4, 6, 8)), \
        r.standard_normal((2, 4, 6, 3))
    bmask = r.random((5, 6)) > 0.5
    bmask[2] = False  # one fully masked row
    fmask = r.standard_normal((2, 1, 5, 6))
    for kw in ({}, {"attn_mask": bmask}, {"attn_mask": fmask}, {"is_causal": True},
               {"scale": 0.7}):
        cq, tq = _pair(q, torch)
        ck, tk = _pair(k, torch)
        cv, tv = _pair(v, torch)
        ckw = {a: (_t(b) if isinstance(b, np.ndarray) else b) for a, b in kw.items()}
        tkw = {a: (torch.tensor(b) if isinstance(b, np.ndarray) else b) for a, b in kw.items()}
        out, tout = sdpa(cq, ck, cv, **ckw), tF.scaled_dot_product_attention(tq, tk, tv, **tkw)
        np.testing.assert_allclose(_np(out), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        g = r.standard_normal(tout.shape)
        out.backward(_t(g))
        tout.backward(torch.tensor(g))
        for c, t in ((cq, tq), (ck, tk), (cv, tv)):
            np.testing.assert_allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-11)


MHA_CONFIGS = [
    {},
    {"batch_first": True},
    {"bias": False},
    {"add_bias_kv": True},
    {"add_zero_attn": True, "batch_first": True},
    {"kdim": 5, "vdim": 3},
]


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("cfg", MHA_CONFIGS, ids=lambda c: ",".join(c) or "default")
@pytest.mark.parametrize("mode", ["self", "cross"])
def test_mha_against_torch(torch, cfg, mode):
    torch.manual_seed(0)
    E, H = 8, 2
    tm = torch.nn.MultiheadAttention(E, H, **cfg).double()
    m = MultiheadAttention(E, H, **cfg).double()
    _load(m, tm, torch)
    r = _rng(21)
    bf = cfg.get("batch_first", False)
    N, L, S = 3, 4, 5
    sep = "kdim" in cfg
    if mode == "self" and not sep:
        S = L
    qs = (N, L, E) if bf else (L, N, E)
    ks = (N, S, cfg.get("kdim", E)) if bf else (S, N, cfg.get("kdim", E))
    vs = ks[:2] + (cfg.get("vdim", E),)
    extra = int(cfg.get("add_bias_kv", False)) + int(cfg.get("add_zero_attn", False))
    am = r.random((L, S)) > 0.7
    am[:, 0] = False
    kpm = np.zeros((N, S), bool)
    kpm[1, -2:] = True
    for nw in (False, True):
        for masks in ({}, {"attn_mask": am}, {"key_padding_mask": kpm},
                      {"attn_mask": np.where(am, -np.inf, 0.0), "key_padding_mask": kpm}):
            q, tq = _pair(r.standard_normal(qs), torch)
            if mode == "self" and not sep:
                k, tk, v, tv = q, tq, q, tq
            else:
                k, tk = _pair(r.standard_normal(ks), torch)
                v, tv = _pair(r.standard_normal(vs), torch)
            cm = {a: _t(b) for a, b in masks.items()}
            tmk = {a: torch.tensor(b) for a, b in masks.items()}
            m.zero_grad()
            tm.zero_grad()
            _compare(m, tm, torch, ((q, k, v), {"need_weights": nw, **cm}),
                     ((tq, tk, tv), {"need_weights": nw, **tmk}), outs=lambda o: o[0])
            if nw:
                w = m(q, k, v, average_attn_weights=False, **cm)[1]
                tw = tm(tq, tk, tv, average_attn_weights=False, **tmk)[1]
                assert w.shape == tuple(tw.shape) == (N, H, L, S + extra)
                np.testing.assert_allclose(_np(w), tw.detach().numpy(), atol=1e-12)


def test_mha_float32_fast_path_against_torch(torch):
    torch.manual_seed(1)
    tm = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    m = MultiheadAttention(16, 4, batch_first=True)
    _load(m, tm, torch)
    x = _rng(22).standard_normal((4, 10, 16)).astype(np.float32)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(10)
    cx, tx = _pair(x, torch)
    _compare(m, tm, torch, ((cx, cx, cx), {"need_weights": False, "attn_mask": _t(mask.numpy()),
                                            "is_causal": True}),
             ((tx, tx, tx), {"need_weights": False, "attn_mask": mask, "is_causal": True}),
             outs=lambda o: o[0], tol={"rtol": 1e-4, "atol": 2e-5})


def _act_fns(torch):
    return [("relu", "relu"), ("gelu", "gelu"),
            (lambda x: chainrule.tanh(x) * 2, lambda x: torch.tanh(x) * 2)]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("act", [0, 1, 2])
def test_encoder_layer_against_torch(torch, norm_first, act):
    torch.manual_seed(2)
    ca, ta = _act_fns(torch)[act]
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, ta, batch_first=True,
                                          norm_first=norm_first).double()
    cl = TransformerEncoderLayer(8, 2, 16, 0.0, ca, batch_first=True,
                                 norm_first=norm_first).double()
    _load(cl, tl, torch)
    r = _rng(23)
    x = r.standard_normal((3, 5, 8))
    mask = generate_square_subsequent_mask(5, dtype=f64)
    kpm = np.zeros((3, 5), bool)
    kpm[2, 3:] = True
    for kw in ({}, {"src_mask": True, "is_causal": True}, {"src_key_padding_mask": kpm}):
        cx, tx = _pair(x, torch)
        ck = {a: (mask if b is True else _t(b)) if isinstance(b, (np.ndarray, bool)) and
              a != "is_causal" else b for a, b in kw.items()}
        tk = {a: (torch.tensor(mask.numpy()) if b is True else torch.tensor(b))
              if isinstance(b, (np.ndarray, bool)) and a != "is_causal" else b
              for a, b in kw.items()}
        cl.zero_grad()
        tl.zero_grad()
        _compare(cl, tl, torch, ((cx,), ck), ((tx,), tk))


def test_encoder_layer_float32_seq_first_against_torch(torch):
    torch.manual_seed(3)
    tl = torch.nn.TransformerEncoderLayer(16, 4, 32, 0.0, "gelu", norm_first=True)
    cl = TransformerEncoderLayer(16, 4, 32, 0.0, "gelu", norm_first=True)
    _load(cl, tl, torch)
    x = _rng(24).standard_normal((7, 3, 16)).astype(np.float32)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(7)
    cx, tx = _pair(x, torch)
    _compare(cl, tl, torch, ((cx,), {"src_mask": _t(mask.numpy()), "is_causal": True}),
             ((tx,), {"src_mask": mask, "is_causal": True}), tol={"rtol": 1e-4, "atol": 5e-5})


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_against_torch(torch, norm_first):
    torch.manual_seed(4)
    tl = torch.nn.TransformerDecoderLayer(8, 2, 16, 0.0, "gelu", batch_first=True,
                                          norm_first=norm_first).double()
    cl = TransformerDecoderLayer(8, 2, 16, 0.0, "gelu", batch_first=True,
                                 norm_first=norm_first).double()
    _load(cl, tl, torch)
    r = _rng(25)
    tgt, mem = r.standard_normal((2, 4, 8)), r.standard_normal((2, 6, 8))
    mask = generate_square_subsequent_mask(4, dtype=f64)
    mkpm = np.zeros((2, 6), bool)
    mkpm[0, 4:] = True
    ct, tt = _pair(tgt, torch)
    cm, tmem = _pair(mem, torch)
    _compare(cl, tl, torch,
             ((ct, cm), {"tgt_mask": mask, "memory_key_padding_mask": _t(mkpm),
                         "tgt_is_causal": True}),
             ((tt, tmem), {"tgt_mask": torch.tensor(mask.numpy()),
                           "memory_key_padding_mask": torch.tensor(mkpm),
                           "tgt_is_causal": True}))


def test_transformer_stacks_against_torch(torch):
    torch.manual_seed(5)
    tmodel = torch.nn.Transformer(8, 2, 2, 1, 16, 0.0, batch_first=True).double()
    model = Transformer(8, 2, 2, 1, 16, 0.0, batch_first=True).double()
    _load(model, tmodel, torch)
    r = _rng(26)
    src, tgt = r.standard_normal((2, 5, 8)), r.standard_normal((2, 3, 8))
    cs, ts = _pair(src, torch)
    ct, tt = _pair(tgt, torch)
    mask = generate_square_subsequent_mask(3, dtype=f64)
    _compare(model, tmodel, torch, ((cs, ct), {"tgt_mask": mask}),
             ((ts, tt), {"tgt_mask": torch.tensor(mask.numpy())}), tol={"rtol": 1e-9,
                                                                         "atol": 1e-11})


# ---------------------------------------------------------------- threaded kernels
@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_kernels_match_one_thread(monkeypatch, threads):
    import chainrule.primitives.activation as PACT
    import chainrule.primitives.attention as PA

    r = _rng(30)
    x = r.standard_normal(5 * PACT._BLOCK + 123).astype(np.float32)
    g = r.standard_normal(x.shape).astype(np.float32)
    qkv = r.standard_normal((9, 32, 3 * 16)).astype(np.float32)
    bias = np.where(r.random((9, 1, 32, 32)) > 0.2, 0.0, -np.inf).astype(np.float32)
    bias[..., 0] = 0.0
    dmask = (r.random((9, 2, 32, 32)) > 0.5).astype(np.float32) * 2
    g_o = r.standard_normal((9, 32, 16)).astype(np.float32)
    g_pt = r.standard_normal((9, 2, 32, 32)).astype(np.float32)

    def run():
        y = PACT._gelu(np, x)
        o, pt = PA._self_attention(np, qkv, bias, dmask, heads=2, scale=0.3, seq_first=False)
        return (y, PACT._gelu_backward(np, g, x, y), o, pt,
                *PA._self_attention(np, qkv.swapaxes(0, 1).copy(), None, None, heads=2,
                                    scale=0.3, seq_first=True),
                PA._self_attention_vjp_np(np, g_o, g_pt, qkv, dmask, (o, pt), heads=2, scale=0.3,
                                          seq_first=False),
                PA._self_attention_vjp_np(np, g_o, None, qkv, dmask, (o, pt), heads=2, scale=0.3,
                                          seq_first=False))

    from chainrule.backend import threads as T

    monkeypatch.setattr(T, "num_threads", lambda: 1)
    ref = run()
    monkeypatch.setattr(T, "num_threads", lambda: threads)
    monkeypatch.setattr(PA, "_MIN_WORK", 1)  # split even these small inputs
    monkeypatch.setattr(PACT, "_MIN_WORK", 1)
    monkeypatch.setattr(T, "POOL", [None, 0, 0])
    for a, b in zip(run(), ref):
        np.testing.assert_array_equal(a, b)
