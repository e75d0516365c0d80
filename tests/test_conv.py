"""Convolution, pooling and nearest resizing: forward against direct-loop NumPy references,
first and second derivatives by finite differences (float64), the primitives' jvp rules
against their vjp rules, PyTorch as an oracle where installed, and the errors."""

import itertools
import math

import numpy as np
import pytest

import chainrule
from chainrule.autograd import grad
from chainrule.ops import conv as C
from chainrule.primitives import RAW, REGISTRY, TENSOR
from chainrule.testing import gradcheck, gradgradcheck

RNG = np.random.default_rng(1234)


def T(a, rg=False):
    return chainrule.tensor(np.asarray(a), requires_grad=rg)


def rand(*shape):
    return RNG.standard_normal(shape)


# ---------------------------------------------------------------- direct-loop references
def _as2d(x, w=None):
    """1-D problems as 2-D ones with a height of 1."""
    return x[:, :, None], (None if w is None else w[:, :, None])


def ref_conv2d(x, w, b, stride, pads, dil, groups):
    n_ = x.shape[0]
    o_, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    ho = (xp.shape[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n_, o_, ho, wo))
    og = o_ // groups
    for n, o, i, j in itertools.product(range(n_), range(o_), range(ho), range(wo)):
        g = o // og
        h0, w0 = i * stride[0], j * stride[1]
        patch = xp[n, g * cg:(g + 1) * cg, h0:h0 + dil[0] * (kh - 1) + 1:dil[0],
                   w0:w0 + dil[1] * (kw - 1) + 1:dil[1]]
        y[n, o, i, j] = np.sum(patch * w[o]) + (0.0 if b is None else b[o])
    return y


def ref_conv_transpose2d(x, w, b, stride, pad, opad, groups, dil):
    n_, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cig = cin // groups
    ho = (h - 1) * stride[0] - 2 * pad[0] + dil[0] * (kh - 1) + opad[0] + 1
    wo = (wd - 1) * stride[1] - 2 * pad[1] + dil[1] * (kw - 1) + opad[1] + 1
    full = np.zeros((n_, cog * groups, ho + 2 * pad[0], wo + 2 * pad[1]))
    for n, ci, i, j, a, c in itertools.product(range(n_), range(cin), range(h), range(wd),
                                               range(kh), range(kw)):
        g = ci // cig
        full[n, g * cog:(g + 1) * cog, i * stride[0] + a * dil[0],
             j * stride[1] + c * dil[1]] += x[n, ci, i, j] * w[ci, :, a, c]
    y = full[:, :, pad[0]:pad[0] + ho, pad[1]:pad[1] + wo]
    return y if b is None else y + b[:, None, None]


def _pool_out(n, k, s, p, d, ceil):
    ext = d * (k - 1) + 1
    if ceil:
        o = math.ceil((n + 2 * p - ext) / s) + 1
        if (o - 1) * s >= n + p:
            o -= 1
        return o
    return (n + 2 * p - ext) // s + 1


def ref_max_pool2d(x, k, s, p, d, ceil):
    n_, c_, h, w = x.shape
    ho, wo = (_pool_out(h, k[0], s[0], p[0], d[0], ceil), _pool_out(w, k[1], s[1], p[1], d[1],
                                                                      ceil))
    y = np.full((n_, c_, ho, wo), -np.inf)
    ind = np.zeros((n_, c_, ho, wo), dtype=np.int64)
    for n, c, i, j in itertools.product(range(n_), range(c_), range(ho), range(wo)):
        for a, b in itertools.product(range(k[0]), range(k[1])):
            r, q = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1]
            if 0 <= r < h and 0 <= q < w and x[n, c, r, q] > y[n, c, i, j]:
                y[n, c, i, j] = x[n, c, r, q]
                ind[n, c, i, j] = r * w + q
    return y, ind


def ref_avg_pool2d(x, k, s, p, ceil, include_pad, divisor=None):
    n_, c_, h, w = x.shape
    ho, wo = _pool_out(h, k[0], s[0], p[0], 1, ceil), _pool_out(w, k[1], s[1], p[1], 1, ceil)
    y = np.zeros((n_, c_, ho, wo))
    for i, j in itertools.product(range(ho), range(wo)):
        h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
        h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
        size = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
        total = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3))
        div = divisor or (size if include_pad else (h1 - h0) * (w1 - w0))
        y[:, :, i, j] = total / div
    return y


def ref_adaptive_avg_pool2d(x, out):
    h, w = x.shape[2:]
    y = np.zeros(x.shape[:2] + tuple(out))
    for i, j in itertools.product(range(out[0]), range(out[1])):
        h0, h1 = (i * h) // out[0], -(-((i + 1) * h) // out[0])
        w0, w1 = (j * w) // out[1], -(-((j + 1) * w) // out[1])
        y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


# ---------------------------------------------------------------- configurations
# (input shape, weight shape, kwargs) for conv2d
CONV2D = [
    ((2, 3, 6, 5), (4, 3, 3, 3), dict()),
    ((2, 2, 7, 6), (3, 2, 3, 2), dict(stride=2, padding=1)),
    ((1, 2, 8, 9), (2, 2, 2, 3), dict(stride=(1, 2), padding=(1, 2), dilation=(2, 1))),
    ((2, 4, 5, 5), (6, 2, 3, 3), dict(groups=2, padding=1, bias=False)),
    ((1, 3, 5, 6), (3, 1, 3, 3), dict(groups=3, stride=2)),  # depthwise
    ((1, 2, 6, 5), (2, 2, 4, 2), dict(padding="same", dilation=(1, 2))),  # asymmetric pad
    ((2, 2, 5, 5), (3, 2, 2, 2), dict(padding="valid", dilation=2)),
    ((2, 3, 4, 4), (5, 3, 1, 1), dict(bias=False)),  # 1x1
]
CONV1D = [
    ((2, 3, 9), (4, 3, 3), dict()),
    ((2, 4, 10), (4, 2, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    ((1, 2, 7), (3, 2, 4), dict(padding="same", bias=False)),
]
# (input shape, weight shape, kwargs) for conv_transpose2d
CONVT2D = [
    ((2, 3, 4, 3), (3, 2, 3, 3), dict()),
    ((1, 2, 3, 4), (2, 3, 3, 2), dict(stride=2, padding=1, output_padding=1)),
    ((2, 4, 3, 3), (4, 1, 2, 3), dict(groups=2, dilation=(2, 1), stride=(1, 2), bias=False)),
    ((1, 2, 3, 3), (2, 2, 2, 2), dict(dilation=2, output_padding=1)),  # opad >= stride
    ((2, 4, 3, 3), (4, 3, 3, 2), dict(groups=2, padding=(1, 0), dilation=(1, 2))),
]
CONVT1D = [
    ((2, 3, 5), (3, 2, 3), dict(stride=3, padding=1, output_padding=2)),
    ((1, 4, 4), (4, 1, 2), dict(groups=2, dilation=3, bias=False)),
]
# max_pool2d kwargs on a (2, 3, 7, 6) input
MAXPOOL2D = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=1),  # overlapping windows
    dict(kernel_size=2, stride=2, dilation=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, stride=3, ceil_mode=True, padding=1),
]
AVGPOOL2D = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, stride=1, divisor_override=3),
]


def _conv_args(xs, ws, kw, transposed=False):
    kw = dict(kw)
    use_bias = kw.pop("bias", True)
    x, w = rand(*xs), rand(*ws)
    nout = ws[1] * kw.get("groups", 1) if transposed else ws[0]
    b = rand(nout) if use_bias else None
    return x, w, b, kw


def _pairs(kw, nd):
    out = {}
    for k in ("stride", "dilation", "padding", "output_padding"):
        v = kw.get(k, 1 if k in ("stride", "dilation") else 0)
        out[k] = (v,) * nd if isinstance(v, int) else v
    return out


# ---------------------------------------------------------------- forward vs references
@pytest.mark.parametrize("xs,ws,kw", CONV2D)
def test_conv2d_matches_loop_reference(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw)
    g = _pairs(kw, 2)
    pad = kw.get("padding", 0)
    if pad == "same":
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in zip(ws[2:], g["dilation"])]
    elif pad == "valid":
        pads = [(0, 0), (0, 0)]
    else:
        pads = [(p, p) for p in g["padding"]]
    ref = ref_conv2d(x, w, b, g["stride"], pads, g["dilation"], kw.get("groups", 1))
    y = C.conv2d(T(x), T(w), None if b is None else T(b), **kw)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    if pad == "same":
        assert y.shape[2:] == xs[2:]


@pytest.mark.parametrize("xs,ws,kw", CONV1D)
def test_conv1d_matches_loop_reference(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw)
    g = _pairs(kw, 1)
    if kw.get("padding") == "same":
        tot = g["dilation"][0] * (ws[2] - 1)
        pads = [(0, 0), (tot // 2, tot - tot // 2)]
    else:
        pads = [(0, 0), (g["padding"][0],) * 2]
    x2, w2 = _as2d(x, w)
    ref = ref_conv2d(x2, w2, b, (1, g["stride"][0]), pads, (1, g["dilation"][0]),
                     kw.get("groups", 1))[:, :, 0]
    y = C.conv1d(T(x), T(w), None if b is None else T(b), **kw)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs,ws,kw", CONVT2D)
def test_conv_transpose2d_matches_loop_reference(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw, transposed=True)
    g = _pairs(kw, 2)
    ref = ref_conv_transpose2d(x, w, b, g["stride"], g["padding"], g["output_padding"],
                               kw.get("groups", 1), g["dilation"])
    y = C.conv_transpose2d(T(x), T(w), None if b is None else T(b), **kw)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs,ws,kw", CONVT1D)
def test_conv_transpose1d_matches_loop_reference(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw, transposed=True)
    g = _pairs(kw, 1)
    x2, w2 = _as2d(x, w)
    ref = ref_conv_transpose2d(x2, w2, b, (1,) + g["stride"], (0,) + g["padding"],
                               (0,) + g["output_padding"], kw.get("groups", 1),
                               (1,) + g["dilation"])[:, :, 0]
    y = C.conv_transpose1d(T(x), T(w), None if b is None else T(b), **kw)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


def test_conv_transpose_is_the_adjoint_of_conv():
    x, w, y = rand(2, 4, 7, 6), rand(6, 2, 3, 2), None
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    y = C.conv2d(T(x), T(w), **kw).detach().numpy()
    v = rand(*y.shape)
    xt = C.conv_transpose2d(T(v), T(w), **kw, output_padding=(0, 0)).detach().numpy()
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.sum(y * v), np.sum(x * xt), rtol=1e-12)


@pytest.mark.parametrize("kw", MAXPOOL2D)
def test_max_pool2d_matches_loop_reference(kw):
    x = rand(2, 3, 7, 6)
    g = _pairs(kw, 2)
    k = kw["kernel_size"]
    k = (k, k) if isinstance(k, int) else k
    s = kw.get("stride", k)
    s = (s, s) if isinstance(s, int) else s
    ref, ref_ind = ref_max_pool2d(x, k, s, g["padding"], g["dilation"],
                                  kw.get("ceil_mode", False))
    y, ind = C.max_pool2d(T(x), **kw, return_indices=True)
    np.testing.assert_array_equal(y.detach().numpy(), ref)
    np.testing.assert_array_equal(ind.detach().numpy(), ref_ind)
    assert ind.dtype == chainrule.int64


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = T(np.array([[[[1.0, 1.0], [1.0, 0.0]]]]), rg=True)
    C.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.detach().numpy()[0, 0], [[1.0, 0.0], [0.0, 0.0]])
    x = T(np.array([[[2.0, 2.0, 5.0, 5.0, 1.0]]]), rg=True)
    _, ind = C.max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(ind.detach().numpy(), [[[0, 2]]])


def test_max_pool_backward_with_infinite_gradient_is_nan_free():
    torch = pytest.importorskip("torch")
    x = rand(1, 2, 4, 6)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)):
        g = rand(*C.max_pool2d(T(x), **kw).shape)
        g[0, 0, 0, 0] = np.inf
        xt = T(x, rg=True)
        C.max_pool2d(xt, **kw).backward(T(g))
        xr = torch.tensor(x, requires_grad=True)
        torch.nn.functional.max_pool2d(xr, **kw).backward(torch.tensor(g))
        np.testing.assert_array_equal(xt.grad.detach().numpy(), xr.grad.numpy())


def test_max_pool1d_matches_loop_reference():
    x = rand(2, 3, 11)
    for kw in (dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1, dilation=2),
               dict(kernel_size=2, stride=2, ceil_mode=True)):
        g = _pairs(kw, 1)
        k = kw["kernel_size"]
        s = kw.get("stride", k)
        ref, ref_ind = ref_max_pool2d(x[:, :, None], (1, k), (1, s), (0,) + g["padding"],
                                      (1,) + g["dilation"], kw.get("ceil_mode", False))
        y, ind = C.max_pool1d(T(x), **kw, return_indices=True)
        np.testing.assert_array_equal(y.detach().numpy(), ref[:, :, 0])
        np.testing.assert_array_equal(ind.detach().numpy(), ref_ind[:, :, 0])


@pytest.mark.parametrize("kw", AVGPOOL2D)
def test_avg_pool2d_matches_loop_reference(kw):
    x = rand(2, 3, 7, 6)
    k = kw["kernel_size"]
    k = (k, k) if isinstance(k, int) else k
    s = kw.get("stride", k)
    s = (s, s) if isinstance(s, int) else s
    p = _pairs(kw, 2)["padding"]
    ref = ref_avg_pool2d(x, k, s, p, kw.get("ceil_mode", False),
                         kw.get("count_include_pad", True), kw.get("divisor_override"))
    y = C.avg_pool2d(T(x), **kw)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12, atol=1e-14)


def test_avg_pool1d_matches_loop_reference():
    x = rand(2, 2, 9)
    y = C.avg_pool1d(T(x), 4, 3, 2, ceil_mode=True, count_include_pad=False)
    ref = ref_avg_pool2d(x[:, :, None], (1, 4), (1, 3), (0, 2), True, False)[:, :, 0]
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("size,out", [((4, 6), (1, 1)), ((4, 6), (2, 3)), ((5, 7), (3, 2)),
                                      ((5, 4), (5, 3)), ((3, 3), (3, 3))])
def test_adaptive_avg_pool2d_matches_loop_reference(size, out):
    x = rand(2, 3, *size)
    y = C.adaptive_avg_pool2d(T(x), out)
    np.testing.assert_allclose(y.detach().numpy(), ref_adaptive_avg_pool2d(x, out), rtol=1e-12)
    y = C.adaptive_avg_pool2d(T(x), (None, out[1]))
    np.testing.assert_allclose(y.detach().numpy(), ref_adaptive_avg_pool2d(x, (size[0], out[1])),
                               rtol=1e-12)


def test_adaptive_avg_pool1d_matches_loop_reference():
    x = rand(2, 3, 7)
    for o in (1, 7, 3, 4):
        np.testing.assert_allclose(C.adaptive_avg_pool1d(T(x), o).detach().numpy(),
                                   ref_adaptive_avg_pool2d(x[:, :, None], (1, o))[:, :, 0],
                                   rtol=1e-12)


@pytest.mark.parametrize("n,o", [(3, 6), (3, 9), (5, 3), (4, 7), (6, 2), (7, 7)])
def test_interpolate_nearest_size(n, o):
    x = rand(1, 2, n, n + 1)
    y = C.interpolate(T(x), size=(o, o + 1))
    ih = (np.arange(o) * n) // o
    iw = (np.arange(o + 1) * (n + 1)) // (o + 1)
    np.testing.assert_array_equal(y.detach().numpy(), x[:, :, ih][:, :, :, iw])
    y = C.interpolate(T(x[:, :, 0]), size=o)
    np.testing.assert_array_equal(y.detach().numpy(), x[:, :, 0, (np.arange(o) * (n + 1)) // o])


def test_interpolate_scale_factor_and_nearest_exact():
    x = rand(1, 2, 4, 3)
    y = C.interpolate(T(x), scale_factor=(2, 3))
    np.testing.assert_array_equal(y.detach().numpy(), x.repeat(2, axis=2).repeat(3, axis=3))
    y = C.upsample_nearest(T(x), scale_factor=2)
    np.testing.assert_array_equal(y.detach().numpy(), x.repeat(2, axis=2).repeat(2, axis=3))
    y = C.interpolate(T(x), size=(6, 5), mode="nearest-exact")
    ih = np.minimum(np.floor((np.arange(6) + 0.5) * 4 / 6).astype(int), 3)
    iw = np.minimum(np.floor((np.arange(5) + 0.5) * 3 / 5).astype(int), 2)
    np.testing.assert_array_equal(y.detach().numpy(), x[:, :, ih][:, :, :, iw])


def test_float32_stays_float32():
    x = T(rand(2, 3, 8, 8).astype(np.float32), rg=True)
    w = T(rand(4, 3, 3, 3).astype(np.float32), rg=True)
    b = T(rand(4).astype(np.float32), rg=True)
    y = C.max_pool2d(C.conv2d(x, w, b, padding=1), 2)
    y = C.avg_pool2d(C.interpolate(y, scale_factor=2), 2)
    y = C.conv_transpose2d(y, T(rand(4, 2, 2, 2).astype(np.float32)), stride=2)
    assert y.dtype == chainrule.float32
    y.sum().backward()
    for t in (x, w, b):
        assert t.grad.dtype == chainrule.float32


@pytest.mark.parametrize("stride", [1, 2])
def test_batch_chunking_gives_the_same_numbers(monkeypatch, stride):
    # conv / conv_weight / conv_transpose process the batch in cache-sized chunks; force
    # several chunks (and a partial last one) and compare with the one-chunk result
    from chainrule.primitives import conv as PC

    x, w, b = rand(5, 4, 7, 6), rand(6, 2, 3, 2), rand(6)

    def run():
        ts = [T(a, rg=True) for a in (x, w, b)]
        y = C.conv2d(*ts, stride=stride, padding=1, groups=2)
        (y * T(np.arange(y.numel()).reshape(y.shape) % 7)).sum().backward()
        return [y.detach().numpy()] + [t.grad.detach().numpy() for t in ts]

    whole = run()
    for budget in (1, 7000, 20000):  # chunks of 1, 2-3 (a partial last one) images
        monkeypatch.setattr(PC, "_CHUNK_BYTES", budget)
        for a, c in zip(whole, run()):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_empty_batch():
    x = T(np.zeros((0, 3, 6, 6)), rg=True)
    w = T(rand(4, 3, 3, 3), rg=True)
    y = C.conv2d(x, w, padding=1)
    assert y.shape == (0, 4, 6, 6)
    y.sum().backward()
    assert x.grad.shape == x.shape and float(np.abs(w.grad.detach().numpy()).sum()) == 0.0
    assert C.max_pool2d(x, 2).shape == (0, 3, 3, 3)


def test_unbatched_inputs():
    x, w = rand(3, 6, 5), rand(4, 3, 3, 3)
    np.testing.assert_allclose(C.conv2d(T(x), T(w), padding=1).detach().numpy(),
                               C.conv2d(T(x[None]), T(w), padding=1).detach().numpy()[0])
    assert C.max_pool2d(T(x), 2).shape == (3, 3, 2)
    assert C.conv1d(T(rand(3, 8)), T(rand(2, 3, 3))).shape == (2, 6)
    assert C.avg_pool1d(T(rand(3, 8)), 2).shape == (3, 4)


# ---------------------------------------------------------------- derivatives (float64)
def _check(fn, *arrays):
    ts = [T(a, rg=True) for a in arrays]
    assert gradcheck(fn, ts)
    assert gradgradcheck(fn, ts)


@pytest.mark.parametrize("xs,ws,kw", CONV2D)
def test_conv2d_gradients(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw)
    if b is None:
        _check(lambda x, w: C.conv2d(x, w, **kw), x, w)
    else:
        _check(lambda x, w, b: C.conv2d(x, w, b, **kw), x, w, b)


@pytest.mark.parametrize("xs,ws,kw", CONV1D)
def test_conv1d_gradients(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw)
    if b is None:
        _check(lambda x, w: C.conv1d(x, w, **kw), x, w)
    else:
        _check(lambda x, w, b: C.conv1d(x, w, b, **kw), x, w, b)


@pytest.mark.parametrize("xs,ws,kw", CONVT2D + [(a[:3], b[:3], c) for a, b, c in CONVT1D])
def test_conv_transpose_gradients(xs, ws, kw):
    x, w, b, kw = _conv_args(xs, ws, kw, transposed=True)
    f = C.conv_transpose2d if len(xs) == 4 else C.conv_transpose1d
    if b is None:
        _check(lambda x, w: f(x, w, **kw), x, w)
    else:
        _check(lambda x, w, b: f(x, w, b, **kw), x, w, b)


def test_third_order_through_the_conv_family():
    # d/dw of (d/dx of <conv(x, w)^2, 1>) . v: runs conv_weight's and conv_transpose's rules
    # on tensors, so the whole family is differentiated twice
    x = T(rand(1, 2, 5, 5), rg=True)
    w = T(rand(3, 2, 3, 3), rg=True)

    def f(x, w):
        (gx,) = grad((C.conv2d(x, w, stride=2, padding=1) ** 2).sum(), x, create_graph=True)
        return gx

    assert gradgradcheck(f, (x, w))


@pytest.mark.parametrize("kw", MAXPOOL2D)
def test_max_pool2d_gradients(kw):
    _check(lambda x: C.max_pool2d(x, **kw), rand(2, 2, 7, 6))


@pytest.mark.parametrize("kw", AVGPOOL2D)
def test_avg_pool2d_gradients(kw):
    _check(lambda x: C.avg_pool2d(x, **kw), rand(2, 2, 7, 6))


def test_pool1d_gradients():
    _check(lambda x: C.max_pool1d(x, 3, 2, 1, dilation=1, ceil_mode=True), rand(2, 2, 8))
    _check(lambda x: C.avg_pool1d(x, 3, 2, 1, count_include_pad=False), rand(2, 2, 8))


@pytest.mark.parametrize("size,out", [((4, 6), 1), ((4, 6), (2, 3)), ((5, 7), (3, 2))])
def test_adaptive_avg_pool_gradients(size, out):
    _check(lambda x: C.adaptive_avg_pool2d(x, out), rand(2, 2, *size))
    _check(lambda x: C.adaptive_avg_pool1d(x, 3), rand(2, 2, size[1]))


@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(size=(3, 7)),
                                dict(size=(4, 2), mode="nearest-exact"),
                                dict(scale_factor=0.5)])
def test_interpolate_gradients(kw):
    _check(lambda x: C.interpolate(x, **kw), rand(2, 2, 4, 5))


def test_interpolate_1d_gradients():
    _check(lambda x: C.interpolate(x, scale_factor=1.5), rand(2, 2, 5))


# ---------------------------------------------------------------- jvp rules
GEO2 = dict(stride=(2, 1), padding=((1, 1), (0, 1)), dilation=(1, 2))
JVP_CASES = [
    ("conv", [(2, 4, 6, 6), (6, 2, 3, 2), (6,)], dict(GEO2, groups=2), [0, 1, 2]),
    ("conv", [(2, 4, 6, 6), (6, 2, 3, 2), (6,)], dict(GEO2, groups=2, stride=(1, 1)),
     [0, 1, 2]),
    ("conv_transpose", [(2, 6, 3, 4), (6, 2, 3, 2), (4,)], dict(GEO2, groups=2, size=(6, 6)),
     [0, 1, 2]),
    ("conv_transpose", [(2, 6, 4, 4), (6, 2, 3, 2), (4,)],
     dict(GEO2, groups=2, stride=(1, 1), size=(5, 5)), [0, 1, 2]),
    ("conv_weight", [(2, 4, 6, 6), (2, 6, 3, 4)], dict(GEO2, groups=2, kernel=(3, 2)), [0, 1]),
    ("conv_weight", [(2, 4, 6, 6), (2, 6, 6, 5)], dict(GEO2, groups=2, kernel=(3, 2),
                                                       stride=(1, 1)), [0, 1]),
    ("max_pool", [(2, 3, 6, 5)], dict(GEO2, kernel=(3, 2)), [0]),
    ("window_sum", [(2, 3, 6, 5)], dict(GEO2, kernel=(3, 2), scale=0.5), [0]),
    ("window_sum_t", [(2, 3, 3, 4)], dict(GEO2, kernel=(3, 2), scale=0.5, size=(6, 5)), [0]),
]


@pytest.mark.parametrize("name,shapes,params,argnums", JVP_CASES)
@pytest.mark.parametrize("F", [RAW, TENSOR], ids=["raw", "tensor"])
def test_jvp_rules_are_the_transpose_of_the_vjp_rules(name, shapes, params, argnums, F):
    prim = REGISTRY[name]
    arrays = [rand(*s) for s in shapes]
    out = prim.impl(np, *arrays, **params)
    v = rand(*out.shape)
    wrap = (lambda a: T(a)) if F is TENSOR else (lambda a: a)
    unwrap = (lambda t: t.detach().numpy()) if F is TENSOR else (lambda a: a)
    for i in argnums:
        u = rand(*shapes[i])
        ins = [wrap(a) for a in arrays]
        ju = unwrap(prim.jvp[i](F, wrap(u), *ins, wrap(out), **params))
        jtv = unwrap(prim.vjp[i](F, wrap(v), *ins, wrap(out), **params))
        np.testing.assert_allclose(np.sum(v * ju), np.sum(jtv * u), rtol=1e-10)


def test_window_gather_scatter_rules():
    geo = dict(kernel=(2, 3), stride=(1, 2), padding=((1, 0), (1, 1)), dilation=(2, 1))
    x = rand(2, 2, 5, 6)
    m = RAW.max_pool(x, **geo)
    idx = RAW.max_pool_index(x, m, **geo)
    g = RAW.window_gather(x, idx, **geo)
    np.testing.assert_array_equal(g, m)
    v = rand(*g.shape)
    for name, a, p in (("window_gather", x, geo),
                       ("window_scatter", v, dict(geo, size=x.shape[2:]))):
        prim = REGISTRY[name]
        out = prim.impl(np, a, idx, **p)
        cot = rand(*out.shape)
        tan = rand(*a.shape)
        jt = prim.jvp[0](RAW, tan, a, idx, out, **p)
        vj = prim.vjp[0](RAW, cot, a, idx, out, **p)
        np.testing.assert_allclose(np.sum(cot * jt), np.sum(vj * tan), rtol=1e-10)


# ---------------------------------------------------------------- PyTorch as an oracle
def _torch_compare(cr_fn, t_fn, arrays, second_order=False):
    torch = pytest.importorskip("torch")
    ts = [T(a, rg=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, yt = cr_fn(*ts), t_fn(*tt)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    v = rand(*y.shape)
    gs = grad(y, ts, grad_outputs=T(v), create_graph=second_order)
    gts = torch.autograd.grad(yt, tt, torch.tensor(v), create_graph=second_order)
    for g, gt in zip(gs, gts):
        np.testing.assert_allclose(g.detach().numpy(), gt.detach().numpy(), rtol=1e-10, atol=1e-12)
    if second_order:
        s = sum((g * g).sum() for g in gs)
        st = sum((g * g).sum() for g in gts)
        ours = grad(s, ts, allow_unused=True)
        theirs = torch.autograd.grad(st, tt, allow_unused=True)
        for a, g, gt in zip(arrays, ours, theirs):
            g = np.zeros_like(a) if g is None else g.detach().numpy()
            gt = np.zeros_like(a) if gt is None else gt.numpy()
            np.testing.assert_allclose(g, gt, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("xs,ws,kw", CONV2D + CONV1D)
def test_conv_against_torch(xs, ws, kw):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _conv_args(xs, ws, kw)
    cr = C.conv2d if len(xs) == 4 else C.conv1d
    tf = torch.nn.functional.conv2d if len(xs) == 4 else torch.nn.functional.conv1d
    if b is None:
        _torch_compare(lambda x, w: cr(x, w, **kw), lambda x, w: tf(x, w, **kw), [x, w], True)
    else:
        _torch_compare(lambda x, w, b: cr(x, w, b, **kw), lambda x, w, b: tf(x, w, b, **kw),
                       [x, w, b], True)


@pytest.mark.parametrize("xs,ws,kw", CONVT2D + CONVT1D)
def test_conv_transpose_against_torch(xs, ws, kw):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _conv_args(xs, ws, kw, transposed=True)
    cr = C.conv_transpose2d if len(xs) == 4 else C.conv_transpose1d
    tf = torch.nn.functional.conv_transpose2d if len(xs) == 4 else \
        torch.nn.functional.conv_transpose1d
    if b is None:
        _torch_compare(lambda x, w: cr(x, w, **kw), lambda x, w: tf(x, w, **kw), [x, w], True)
    else:
        _torch_compare(lambda x, w, b: cr(x, w, b, **kw), lambda x, w, b: tf(x, w, b, **kw),
                       [x, w, b], True)


@pytest.mark.parametrize("kw", MAXPOOL2D)
def test_max_pool2d_against_torch(kw):
    torch = pytest.importorskip("torch")
    x = rand(2, 3, 7, 6)
    _torch_compare(lambda x: C.max_pool2d(x, **kw),
                   lambda x: torch.nn.functional.max_pool2d(x, **kw), [x])
    _, ind = C.max_pool2d(T(x), **kw, return_indices=True)
    _, tind = torch.nn.functional.max_pool2d(torch.tensor(x), **kw, return_indices=True)
    np.testing.assert_array_equal(ind.detach().numpy(), tind.detach().numpy())


@pytest.mark.parametrize("kw", AVGPOOL2D)
def test_avg_pool2d_against_torch(kw):
    torch = pytest.importorskip("torch")
    _torch_compare(lambda x: C.avg_pool2d(x, **kw),
                   lambda x: torch.nn.functional.avg_pool2d(x, **kw), [rand(2, 3, 7, 6)])


def test_pool1d_and_adaptive_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(2, 3, 10)
    _torch_compare(lambda x: C.max_pool1d(x, 3, 2, 1, 1, True),
                   lambda x: F.max_pool1d(x, 3, 2, 1, 1, True), [x])
    _torch_compare(lambda x: C.avg_pool1d(x, 4, 3, 2, True, False),
                   lambda x: F.avg_pool1d(x, 4, 3, 2, True, False), [x])
    for o in (1, 5, 3, 4):
        _torch_compare(lambda x, o=o: C.adaptive_avg_pool1d(x, o),
                       lambda x, o=o: F.adaptive_avg_pool1d(x, o), [x])
    x = rand(2, 3, 7, 9)
    for o in (1, (7, 3), (3, 4), (None, 2), (5, 9), (4, 12)):
        _torch_compare(lambda x, o=o: C.adaptive_avg_pool2d(x, o),
                       lambda x, o=o: F.adaptive_avg_pool2d(x, o), [x])


@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(scale_factor=1.7),
                                dict(scale_factor=(0.6, 2.5)), dict(size=(3, 11)),
                                dict(size=7, mode="nearest-exact"),
                                dict(scale_factor=1.3, mode="nearest-exact"),
                                dict(scale_factor=2.5, recompute_scale_factor=True)])
def test_interpolate_against_torch(kw):
    torch = pytest.importorskip("torch")
    _torch_compare(lambda x: C.interpolate(x, **kw),
                   lambda x: torch.nn.functional.interpolate(x, **kw), [rand(2, 2, 5, 6)])
    kw1 = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
    _torch_compare(lambda x: C.interpolate(x, **kw1),
                   lambda x: torch.nn.functional.interpolate(x, **kw1), [rand(2, 2, 5)])


def test_3d_ops_gradients():
    x, w, b = rand(1, 2, 4, 3, 5), rand(4, 1, 2, 2, 3), rand(4)
    _check(lambda x, w, b: C.conv3d(x, w, b, padding=(1, 0, 1), groups=2), x, w, b)
    _check(lambda x, w: C.conv3d(x, w, stride=(2, 1, 2), dilation=(1, 2, 1), groups=2), x, w)
    _check(lambda x, w: C.conv_transpose3d(x, w, stride=2, output_padding=(1, 0, 1)),
           rand(1, 4, 2, 2, 3), rand(4, 1, 2, 2, 2))
    _check(lambda x: C.max_pool3d(x, 2, 1, 1), rand(1, 2, 3, 4, 3))
    _check(lambda x: C.avg_pool3d(x, 2, count_include_pad=False, padding=1), rand(1, 2, 3, 4, 3))
    _check(lambda x: C.adaptive_avg_pool3d(x, (2, None, 3)), rand(1, 2, 3, 4, 5))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_3d_ops_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = rand(2, 2, 4, 5, 6), rand(4, 1, 3, 2, 3), rand(4)
    _torch_compare(lambda x, w, b: C.conv3d(x, w, b, padding="same", groups=2),
                   lambda x, w, b: F.conv3d(x, w, b, padding="same", groups=2), [x, w, b])
    _torch_compare(lambda x, w: C.conv_transpose3d(x, w, stride=(1, 2, 1), padding=1),
                   lambda x, w: F.conv_transpose3d(x, w, stride=(1, 2, 1), padding=1),
                   [rand(2, 4, 3, 3, 3), rand(4, 2, 3, 3, 2)])
    x = rand(2, 2, 5, 6, 7)
    _torch_compare(lambda x: C.max_pool3d(x, 3, 2, 1, ceil_mode=True),
                   lambda x: F.max_pool3d(x, 3, 2, 1, ceil_mode=True), [x])
    _, ind = C.max_pool3d(T(x), 2, return_indices=True)
    np.testing.assert_array_equal(ind.detach().numpy(),
                                  F.max_pool3d(torch.tensor(x), 2, return_indices=True)[1])
    _torch_compare(lambda x: C.avg_pool3d(x, (2, 3, 2), 2, 1, True, False),
                   lambda x: F.avg_pool3d(x, (2, 3, 2), 2, 1, True, False), [x])
    _torch_compare(lambda x: C.adaptive_avg_pool3d(x, (3, 4, 2)),
                   lambda x: F.adaptive_avg_pool3d(x, (3, 4, 2)), [x])


def test_interpolate_3d_against_torch():
    torch = pytest.importorskip("torch")
    for kw in (dict(scale_factor=2), dict(size=(3, 5, 2))):
        _torch_compare(lambda x, kw=kw: C.interpolate(x, **kw),
                       lambda x, kw=kw: torch.nn.functional.interpolate(x, **kw),
                       [rand(1, 2, 2, 3, 4)])


def test_float32_against_torch():
    torch = pytest.importorskip("torch")
    x = rand(4, 1, 28, 28).astype(np.float32)
    w1, b1 = rand(6, 1, 5, 5).astype(np.float32), rand(6).astype(np.float32)
    w2 = rand(16, 6, 5, 5).astype(np.float32)

    def net(F, x, w1, b1, w2):
        y = F.max_pool2d(F.conv2d(x, w1, b1, padding=2).relu(), 2)
        return F.avg_pool2d(F.conv2d(y, w2), 2)

    _ = torch  # the oracle runs in float32 too
    ts = [T(a, rg=True) for a in (x, w1, b1, w2)]
    tt = [torch.tensor(a, requires_grad=True) for a in (x, w1, b1, w2)]
    y, yt = net(C, *ts), net(torch.nn.functional, *tt)
    assert y.dtype == chainrule.float32
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    y.sum().backward()
    yt.sum().backward()
    for a, b in zip(ts, tt):
        np.testing.assert_allclose(a.grad.detach().numpy(), b.grad.detach().numpy(),
                                   rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------- errors
def test_conv_shape_errors():
    x = T(rand(1, 3, 5, 5))
    with pytest.raises(chainrule.ShapeError, match=r"conv2d.*3 channels.*expects.*2 channels|"
                                                   r"conv2d.*2 channels, but it has 3"):
        C.conv2d(x, T(rand(4, 2, 3, 3)))
    with pytest.raises(chainrule.ShapeError, match="divisible by 2 at dimension 0"):
        C.conv2d(T(rand(1, 4, 5, 5)), T(rand(3, 2, 3, 3)), groups=2)
    with pytest.raises(chainrule.ShapeError, match=r"smaller than the \(dilated\) kernel"):
        C.conv2d(T(rand(1, 3, 2, 2)), T(rand(4, 3, 3, 3)))
    with pytest.raises(chainrule.ShapeError, match=r"smaller than the \(dilated\) kernel"):
        C.conv2d(x, T(rand(4, 3, 3, 3)), dilation=3)
    with pytest.raises(chainrule.ShapeError, match="weight must be 4-D"):
        C.conv2d(x, T(rand(4, 3, 3)))
    with pytest.raises(chainrule.ShapeError, match=r"expected a 3-D \(unbatched\) or 4-D"):
        C.conv2d(T(rand(5, 5)), T(rand(4, 3, 3, 3)))
    with pytest.raises(chainrule.ShapeError, match=r"bias must have shape \(4,\)"):
        C.conv2d(x, T(rand(4, 3, 3, 3)), T(rand(3)))
    with pytest.raises(ValueError, match="not supported for strided"):
        C.conv2d(x, T(rand(4, 3, 3, 3)), padding="same", stride=2)
    with pytest.raises(ValueError, match="padding must be 'same', 'valid'"):
        C.conv2d(x, T(rand(4, 3, 3, 3)), padding="full")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        C.conv1d(T(rand(1, 3, 5)), T(rand(4, 3, 3)), stride=0)
    with pytest.raises(ValueError, match="groups must be a positive int"):
        C.conv1d(T(rand(1, 3, 5)), T(rand(4, 3, 3)), groups=0)
    with pytest.raises(TypeError, match="stride must be an int or a sequence of 2 ints"):
        C.conv2d(x, T(rand(4, 3, 3, 3)), stride=(1, 2, 3))


def test_conv_dtype_errors():
    x = T(rand(1, 3, 5, 5))
    with pytest.raises(TypeError, match="same dtype"):
        C.conv2d(x, T(rand(4, 3, 3, 3).astype(np.float32)))
    with pytest.raises(TypeError, match="floating-point"):
        C.conv2d(T(np.ones((1, 3, 5, 5), dtype=np.int64)), T(rand(4, 3, 3, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        C.max_pool2d(T(np.ones((1, 3, 4, 4), dtype=np.int64)), 2)


def test_conv_transpose_errors():
    x = T(rand(1, 3, 4, 4))
    with pytest.raises(chainrule.ShapeError, match="to have 2 channels, but it has 3"):
        C.conv_transpose2d(x, T(rand(2, 3, 3, 3)))
    with pytest.raises(ValueError, match="output_padding must be smaller"):
        C.conv_transpose2d(x, T(rand(3, 2, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="no 'same' or 'valid'"):
        C.conv_transpose2d(x, T(rand(3, 2, 3, 3)), padding="same")
    with pytest.raises(chainrule.ShapeError, match="not divisible by groups"):
        C.conv_transpose2d(x, T(rand(3, 2, 3, 3)), groups=2)
    with pytest.raises(chainrule.ShapeError, match="too small"):
        C.conv_transpose1d(T(rand(1, 3, 1)), T(rand(3, 2, 1)), padding=1)


def test_pool_errors():
    x = T(rand(1, 3, 5, 5))
    with pytest.raises(ValueError, match="at most half of the effective kernel size"):
        C.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="at most half of the kernel size"):
        C.avg_pool2d(x, 3, padding=2)
    with pytest.raises(chainrule.ShapeError, match="too small for kernel_size"):
        C.max_pool2d(T(rand(1, 3, 2, 2)), 3)
    with pytest.raises(ValueError, match="divisor_override must be a non-zero int"):
        C.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        C.max_pool1d(T(rand(1, 3, 5)), 0)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        C.adaptive_avg_pool2d(x, 0)


def test_interpolate_errors():
    x = T(rand(1, 3, 5, 5))
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        C.interpolate(x)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        C.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match="mode 'bicubic' is not supported"):
        C.interpolate(x, size=3, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners"):
        C.interpolate(x, size=3, align_corners=True)
    with pytest.raises(chainrule.ShapeError, match="3-D, 4-D or 5-D"):
        C.interpolate(T(rand(5, 5)), size=3)
    with pytest.raises(ValueError, match="scale_factor has 3 entries"):
        C.interpolate(x, scale_factor=(2, 2, 2))



def test_no_graph_is_left_behind_by_a_failed_call():
    x = T(rand(1, 3, 5, 5), rg=True)
    with pytest.raises(chainrule.ShapeError):
        C.conv2d(x, T(rand(4, 2, 3, 3), rg=True))
    assert x.grad is None and x._node is None
