"""Backend "c": ``linear`` with its bias folded into the BLAS call and ``scatter_to`` of rows
(``jit/cgemm.py``), and fused kernels over rows and columns (``jit/render_c.py``), against the
impls, the unfused numpy-backend program and eager.

Tolerances: ``linear`` is the same BLAS product as the impl's, with the bias added before the
product's blocks instead of after them, so results agree to a relative 1e-5 (float32) or
1e-12 (float64) with a small absolute term for sums near zero; the row scatter adds each
row's values in index order where the impl sums sorted runs with ``reduceat`` (another order):
the same tolerances; a fused kernel over rows does the same operations as over the flat index:
compared bitwise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from models import train
from test_cbackend import _run_both

import chainrule as cr
from chainrule.jit import cbackend, cgemm, creduce, kcache, render_c
from chainrule.jit.fuse import KernelSpec
from chainrule.primitives import REGISTRY
from chainrule.primitives.movement import IndexArg

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend 'c': {cbackend.unavailable()}")

_LOADED: dict = {}


def _wrappers(module):
    """``module.wrappers`` on its compiled C source (compiled once per test session)."""
    if module not in _LOADED:
        decl, src = module.source()
        mod, _ = kcache.load(decl, render_c.PRELUDE + src)
        _LOADED[module] = module.wrappers(mod.lib, mod.ffi)
    return _LOADED[module]


def _lib():
    return _wrappers(cgemm)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _linear_case(x, w, b, dtype, taken=True):
    before = cgemm.TAKEN["linear"]
    got = _lib()["linear"](np, x, w, b)
    want = REGISTRY["linear"].impl(np, x, w, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, **_tol(dtype))
    assert cgemm.TAKEN["linear"] == before + taken
    return got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_matches_the_impl_at_odd_sizes(dtype):
    for m, k, n in ((1, 1, 1), (7, 3, 5), (65, 129, 64), (300, 17, 1), (2, 600, 33)):
        x, w = _data((m, k), dtype, m + k), _data((n, k), dtype, n * k)
        b = _data((n,), dtype, n)
        _linear_case(x, w, b, dtype)
        _linear_case(x, w, None, dtype)
    # leading dims of the input, as the transformer's (batch, seq, features)
    x, w, b = _data((4, 9, 24), dtype), _data((40, 24), dtype, 1), _data((40,), dtype, 2)
    assert _linear_case(x, w, b, dtype).shape == (4, 9, 40)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_reads_transposed_and_strided_operands(dtype):
    x, wt = _data((33, 20), dtype), _data((20, 18), dtype, 1)
    b = _data((18,), dtype, 2)
    _linear_case(x, wt.T, b, dtype)            # the backward's linear(g, w.T): w F-contiguous
    _linear_case(_data((20, 33), dtype, 3).T, wt.T, b, dtype)  # the input transposed too
    _linear_case(_data((33, 40), dtype, 4)[:, ::2], _data((18, 40), dtype, 5)[:, ::2], b,
                 dtype)                        # strided: copied
    _linear_case(np.broadcast_to(_data((20,), dtype, 6), (33, 20)), wt.T, b, dtype)
    _linear_case(x, wt.T, np.broadcast_to(b[:1], (18,)), dtype)  # a stride-0 bias
    xs = _data((2, 33, 20), dtype, 7)[:, ::3]  # a 3-d strided input
    _linear_case(xs, wt.T, b, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_propagates_nan_and_inf(dtype):
    x, w, b = _data((6, 5), dtype), _data((4, 5), dtype, 1), _data((4,), dtype, 2)
    x[1, 2], x[3, 0], b[2] = np.nan, np.inf, -np.inf
    got = _lib()["linear"](np, x, w, b)
    want = REGISTRY["linear"].impl(np, x, w, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert np.isnan(got[1]).all() and np.isnan(got[:, 2]).any() and (~fin).sum() > 4
    np.testing.assert_allclose(got[fin], want[fin], **_tol(dtype))


def test_linear_falls_back_where_it_does_not_apply():
    x32, w32 = _data((5, 4), "float32"), _data((3, 4), "float32", 1)
    _linear_case(x32, w32.astype("float64"), None, "float32", taken=False)  # mixed dtypes
    _linear_case(x32, w32, np.zeros(3), "float64", taken=False)  # a float64 bias
    _linear_case(np.zeros((0, 4), "float32"), w32, None, "float32", taken=False)
    xi = np.arange(20).reshape(5, 4)
    _linear_case(xi, np.ones((3, 4), np.int64), None, "float64", taken=False)
    with pytest.raises(ValueError):  # the impl's error on shapes that do not fit
        _lib()["linear"](np, x32, _data((3, 5), "float32"), None)


def _scatter(g, idx, shape, dtype, taken=True):
    before = cgemm.TAKEN["scatter_to"]
    got = _lib()["scatter_to"](np, g, idx, shape=shape, index=(IndexArg(0),))
    want = REGISTRY["scatter_to"].impl(np, g, idx, shape=shape, index=(IndexArg(0),))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, **_tol(dtype))
    assert cgemm.TAKEN["scatter_to"] == before + taken


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_scatter_matches_the_impl(dtype):
    rng = np.random.default_rng(0)
    for rows, cols, idx_shape in ((65, 128, (16, 64)), (7, 3, (5,)), (1, 1, (40,)),
                                  (11, 33, (3, 2, 9))):
        idx = rng.integers(-rows, rows, idx_shape)
        g = _data(idx_shape + (cols,), dtype, rows)
        _scatter(g, idx, (rows, cols), dtype)
        _scatter(g, idx.astype(np.int32), (rows, cols), dtype)
    idx = np.array([2, 0, 2, 2])  # a 1-d output: one value per index
    _scatter(_data((4,), dtype), idx, (3,), dtype)
    g = _data((6, 10), dtype)[:, ::2]  # a strided gradient, nan and inf in it
    g[0, 0], g[1, 1] = np.nan, -np.inf
    _scatter(g, np.array([1, 0, 1, 3, 3, 1]), (4, 5), dtype)


def test_row_scatter_errors_and_falls_back_as_the_impl():
    g = _data((3, 4), "float32")
    with pytest.raises(IndexError):
        _lib()["scatter_to"](np, g, np.array([0, 5, 1]), shape=(5, 4), index=(IndexArg(0),))
    before = cgemm.TAKEN["scatter_to"]
    g3 = _data((4, 2, 4), "float32")
    got = _lib()["scatter_to"](np, g3, np.array([0, 1]), shape=(4, 2, 4),
                               index=(slice(None), IndexArg(0)))  # not the first axis alone
    want = REGISTRY["scatter_to"].impl(np, g3, np.array([0, 1]), shape=(4, 2, 4),
                                       index=(slice(None), IndexArg(0)))
    np.testing.assert_array_equal(got, want)
    _scatter(g.astype(np.float16), np.array([0, 1, 1]), (2, 4), "float32", taken=False)
    assert cgemm.TAKEN["scatter_to"] == before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_and_embedding_through_the_jit(dtype):
    """Values and gradients on backend c against the numpy backend: a linear layer with and
    without bias, its backward's products, and an embedding lookup's row scatter."""
    idx = np.array([[3, 1, 3], [0, 3, 6]])
    fn = (lambda x, w, b, e: cr.nn.functional.linear(x, w, b).tanh().sum()
          + cr.nn.functional.linear(x * 2.0, w).sum() + (e[idx] * e[idx]).sum())
    arrays = (_data((2, 7, 19), dtype), _data((23, 19), dtype, 1), _data((23,), dtype, 2),
              _data((7, 17), dtype, 3))
    before = dict(cgemm.TAKEN)
    want, got, _ = _run_both(fn, *arrays)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == "float32" else 1e-10,
                                   atol=1e-4 if dtype == "float32" else 1e-10)
    assert cgemm.TAKEN["linear"] > before.get("linear", 0)
    assert cgemm.TAKEN["scatter_to"] > before.get("scatter_to", 0)


def test_transformer_50_steps_match_eager():
    """50 steps of the small transformer (linear layers, embeddings, Adam) on backend c
    against eager, as test_cbackend's 20-step comparison (the key projection's bias left out of
    the state comparison, for the reason given there); the linear and row-scatter paths ran."""
    if os.environ.get("CHAINRULE_JIT_VERIFY"):
        pytest.skip("verify on backend c reports the key bias's Adam-amplified rounding noise")
    before = dict(cgemm.TAKEN)
    fused_before = creduce.TAKEN["layer_norm_affine_vjp"]
    eager_losses, eager_state, _ = train("transformer_adam", 50, jit=False)
    jit_losses, jit_state, f = train("transformer_adam", 50, jit=True, fullgraph=True,
                                     backend="c")
    assert f.backend == "c" and sum(e.hits for e in f._cache.values()) >= 47, f.explain()
    # (a residual add of a product folds it into kernel.linear_add: counted with them)
    assert (cgemm.TAKEN["linear"] + cgemm.TAKEN["linear_add"] >= before.get("linear", 0)
            + before.get("linear_add", 0) + 47 * 4)
    assert cgemm.TAKEN["scatter_to"] >= before.get("scatter_to", 0) + 47
    # the layer norms with their affine steps fused (three a step: the block's two, the final)
    assert creduce.TAKEN["layer_norm_affine_vjp"] >= fused_before + 47 * 3
    np.testing.assert_allclose(jit_losses, eager_losses, rtol=1e-4, atol=1e-5)
    for i, (a, b) in enumerate(zip(eager_state, jit_state)):
        if np.shape(a) == (48,):
            a, b = np.r_[a[:16], a[32:]], np.r_[b[:16], b[32:]]
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=f"state entry {i}")


# ---------------------------------------------------------------- kernels over rows
ROWS = [
    ("bias_row", lambda x, b: cr.nn.functional.relu(x * 2.0 + b), ((9, 40), (40,))),
    ("column", lambda x, s: (x - s) / (s * s + 1.0), ((6, 33), (6, 1))),
    ("middle", lambda x, y: x * y + x, ((3, 4, 17), (4, 17))),
    ("outer", lambda x, y: cr.maximum(x, y) - x, ((5, 1, 20), (1, 3, 20))),
    ("lead_column", lambda x, y: x / y, ((2, 5, 64), (2, 1, 1))),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ROWS, ids=lambda c: c[0])
def test_kernels_over_rows_are_bitwise_the_unfused_program(case, dtype):
    _, fn, shapes = case
    arrays = [_data(s, dtype, k) for k, s in enumerate(shapes)]
    arrays[0].flat[3] = np.nan
    arrays[1].flat[1] = np.inf
    want, got, f = _run_both(fn, *arrays)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    src = "".join(c.kernels.source for c in f._compiles if c.kernels is not None)
    assert "for (ptrdiff_t r = 0;" in src, src


def test_row_loop_reads_each_input_in_runs():
    spec = KernelSpec((4, 64, 128), [("array", "float32", (4, 64, 128)),
                                     ("array", "float32", (128,)),
                                     ("array", "float32", (64, 1)),
                                     ("array", "float32", (4, 1, 128))],
                      [("multiply", "float32", "float32", (("in", 0), ("in", 1))),
                       ("add", "float32", "float32", (("t", 0), ("in", 2))),
                       ("add", "float32", "float32", (("t", 1), ("in", 3)))], [2])
    src = render_c.render(spec, "k0")
    for load in ("p0[i]", "p1[j]", "p2[(r % 64)]", "p3[((r / 64)) * 128 + j]"):
        assert load in src, src
    flat = KernelSpec((4, 8), [("array", "float32", (4, 8)), ("array", "float32", (8,))],
                      [("add", "float32", "float32", (("in", 0), ("in", 1)))], [0])
    assert "p1[(i % 8)]" in render_c.render(flat, "k1")  # a short row: one flat loop


# ---------------------------------------------------------------- attention blocks in one loop
def _creduce():
    from chainrule.jit import creduce

    return creduce, _wrappers(creduce)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seq_first", [False, True])
@pytest.mark.parametrize("sizes", [(3, 7, 3, 5), (2, 64, 4, 32), (1, 1, 1, 1)])
def test_attention_blocks_in_c_match_the_impl(sizes, seq_first, dtype):
    """The one-loop forward and backward (creduce's attention paths: each (sample, head)
    block's products and softmax together) against the NumPy impl and its fused backward,
    with a causal mask, a finite bias, none; NaN in the input propagates as there."""
    from chainrule.primitives import attention

    creduce, w = _creduce()
    N, L, H, D = sizes
    shape = (L, N, 3 * H * D) if seq_first else (N, L, 3 * H * D)
    qkv = _data(shape, dtype, 1)
    scale = 1 / np.sqrt(D)
    for bias in (np.triu(np.full((L, L), -np.inf, dtype), 1), _data((1, L, L), dtype, 2), None):
        before = dict(creduce.TAKEN)
        o, pt = w["self_attention"](np, qkv, bias, None, heads=H, scale=scale,
                                    seq_first=seq_first)
        o2, pt2 = attention._self_attention(np, qkv, bias, None, H, scale, seq_first)
        np.testing.assert_allclose(o, o2, **_tol(dtype))
        np.testing.assert_allclose(pt, pt2, **_tol(dtype))
        g = _data(o.shape, dtype, 3)
        d = w["kernel.self_attention_vjp"](np, g, None, qkv, None, (o, pt), H, scale,
                                           seq_first)
        d2 = attention._self_attention_vjp_np(np, g, None, qkv, None, (o2, pt2), H, scale,
                                              seq_first)
        assert d.shape == d2.shape == qkv.shape
        np.testing.assert_allclose(d, d2, **_tol(dtype))
        assert creduce.TAKEN["attention"] == before.get("attention", 0) + 1
        assert creduce.TAKEN["attention_vjp"] == before.get("attention_vjp", 0) + 1
    bad = qkv.copy()
    bad[(0, 0, 0)] = np.nan
    o, _ = w["self_attention"](np, bad, None, None, heads=H, scale=scale, seq_first=seq_first)
    o2, _ = attention._self_attention(np, bad, None, None, H, scale, seq_first)
    np.testing.assert_array_equal(np.isnan(o), np.isnan(o2))
    # a strided input is read as a copy
    wide = _data(shape[:-1] + (2 * shape[-1],), dtype, 4)[..., ::2]
    o, _ = w["self_attention"](np, wide, None, None, heads=H, scale=scale, seq_first=seq_first)
    o2, _ = attention._self_attention(np, wide, None, None, H, scale, seq_first)
    np.testing.assert_allclose(o, o2, **_tol(dtype))


def test_attention_blocks_fall_back_where_they_do_not_apply():
    from chainrule.primitives import attention

    creduce, w = _creduce()
    N, L, H, D = 2, 5, 2, 3
    qkv = _data((N, L, 3 * H * D), "float32")
    before = dict(creduce.TAKEN)
    dmask = (np.random.default_rng(0).random((N, H, L, L)) > 0.3).astype("float32") / 0.7
    o, _ = w["self_attention"](np, qkv, None, dmask, heads=H, scale=0.5, seq_first=False)
    o2, _ = attention._self_attention(np, qkv, None, dmask, H, 0.5, False)
    np.testing.assert_allclose(o, o2, rtol=1e-5, atol=1e-6)
    per_sample = _data((N, 1, L, L), "float32", 5)  # a bias per sample
    o, _ = w["self_attention"](np, qkv, per_sample, None, heads=H, scale=0.5, seq_first=False)
    o2, _ = attention._self_attention(np, qkv, per_sample, None, H, 0.5, False)
    np.testing.assert_allclose(o, o2, rtol=1e-5, atol=1e-6)
    assert dict(creduce.TAKEN) == before  # neither call took the one-loop path
