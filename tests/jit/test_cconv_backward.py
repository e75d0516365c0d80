"""Backend "c": the backward convolutions (``conv_weight``, ``conv_transpose``) as C loops over
the images (``jit/cconv.py``), against the impls.

Not bitwise the impls: ``conv_weight`` sums each thread's images into its own partial and adds
the partials in thread order (the impl sums chunks of images), and ``conv_transpose`` scatters
each offset's product into the image (the stride-1 impl folds a kernel row into its product),
so results agree within float rounding: relative 1e-12 in float64 and 2e-5 in float32, against
the largest magnitude of the result. Run to run, and at any thread count, they are bitwise
equal (``conv_weight`` sums fixed runs of images, each into its own partial).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import cconv, kcache, render_c
from chainrule.primitives import RAW, fast_paths

pytestmark = pytest.mark.skipif(not cconv.gemm_pointers(),
                                reason="NumPy's bundled OpenBLAS not found")


def _lib():
    decl, src = cconv.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return cconv.wrappers(mod.lib, mod.ffi)


def _close(got, want, dtype):
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = max(float(np.nanmax(np.abs(np.where(np.isfinite(want), want, 0)))), 1.0)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


CASES = [  # N, C, H, W, O, kernel, stride, padding, dilation
    (8, 1, 28, 28, 6, (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),  # LeNet's conv1, fewer images
    (9, 6, 14, 14, 16, (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),  # conv2
    (1, 5, 9, 7, 4, (3, 3), (1, 1), ((1, 0), (2, 1)), (2, 1)),  # batch 1, asymmetric padding
    (3, 5, 11, 13, 1, (3, 3), (2, 3), ((1, 1), (1, 1)), (1, 2)),  # strides, one output channel
    (3, 1, 6, 6, 3, (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1)),  # 1x1 kernel, stride 2
    (3, 2, 5, 8, 3, (5, 3), (1, 2), ((2, 3), (0, 2)), (1, 1)),  # padding wider than needed
]


def _args(case, dtype, seed):
    n, c, h, w_, o, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c) + kernel).astype(dtype)
    p = dict(stride=stride, padding=padding, dilation=dilation, groups=1)
    g = rng.standard_normal(RAW.conv(x, w, None, **p).shape).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    return x, w, g, b, p


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv_weight_in_c_matches_the_impl(case, dtype):
    x, w, g, _, p = _args(case, dtype, 1)
    kernel = tuple(w.shape[2:])
    want = RAW.conv_weight(x, g, kernel=kernel, **p)
    cw = _lib()["conv_weight"]
    # and non-contiguous inputs: Fortran order, every other image of a wider batch
    xw, gw = np.repeat(x, 2, axis=0)[::2], np.asfortranarray(g)
    for xin, gin in ((x, g), (xw, gw)):
        before = cconv.TAKEN["conv_weight"]
        got = cw(np, xin, gin, kernel=kernel, **p)
        assert cconv.TAKEN["conv_weight"] == before + 1  # the C loop ran
        _close(got, want, dtype)
    np.testing.assert_array_equal(cw(np, x, g, kernel=kernel, **p), got)  # run to run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv_transpose_in_c_matches_the_impl(case, dtype, bias):
    x, w, g, b, p = _args(case, dtype, 2)
    b = b if bias else None
    size = tuple(x.shape[2:])
    want = RAW.conv_transpose(g, w, b, size=size, **p)
    ct = _lib()["conv_transpose"]
    for gin, win in ((g, w), (g[:, ::-1], np.asfortranarray(w))):
        if gin is not g:  # reversed output channels: the same channels of w reversed too
            want2 = RAW.conv_transpose(np.ascontiguousarray(gin), w[::-1].copy(), b,
                                       size=size, **p)
            win = np.asfortranarray(w[::-1])
        before = cconv.TAKEN["conv_transpose"]
        got = ct(np, gin, win, b, size=size, **p)
        assert cconv.TAKEN["conv_transpose"] == before + 1
        _close(got, want if gin is g else want2, dtype)


def test_output_padding_leaves_unreached_inputs_at_the_bias():
    """A size larger than the windows reach (a transposed convolution's output_padding)."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal((2, 3, 4, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(2)
    p = dict(stride=(2, 2), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)
    want = RAW.conv_transpose(g, w, b, size=(8, 8), **p)
    _close(_lib()["conv_transpose"](np, g, w, b, size=(8, 8), **p), want, "float64")
    x = rng.standard_normal((2, 2, 8, 8))
    want = RAW.conv_weight(x, g, kernel=(3, 3), **p)
    _close(_lib()["conv_weight"](np, x, g, kernel=(3, 3), **p), want, "float64")


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_propagate_as_in_the_impl(dtype):
    x, w, g, b, p = _args(CASES[2], dtype, 4)
    x[0, 1, 3, 2], x[0, 2, 0, 0], g[0, 1, 2, 2] = np.nan, np.inf, -np.inf
    lib = _lib()
    kernel = tuple(w.shape[2:])
    got = lib["conv_weight"](np, x, g, kernel=kernel, **p)
    want = RAW.conv_weight(x, g, kernel=kernel, **p)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got).any()
    _close(got, want, dtype)
    got = lib["conv_transpose"](np, g, w, b, size=tuple(x.shape[2:]), **p)
    want = RAW.conv_transpose(g, w, b, size=tuple(x.shape[2:]), **p)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isinf(got).any()
    _close(got, want, dtype)


def test_calls_the_loops_do_not_cover_run_the_impl():
    lib = _lib()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 7, 7)).astype("float32")
    g = rng.standard_normal((2, 4, 5, 5)).astype("float32")
    w = rng.standard_normal((4, 2, 3, 3)).astype("float32")
    grouped = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=2)
    plain = dict(grouped, groups=1)
    w1 = rng.standard_normal((4, 4, 3, 3)).astype("float32")
    calls = [  # (C wrapper, impl, args, params)
        ("conv_weight", (x, g), dict(grouped, kernel=(3, 3))),  # groups
        ("conv_transpose", (g, w, None), dict(grouped, size=(7, 7))),
        ("conv_weight", (x.astype("float16"), g.astype("float16")),  # float16: the lowp impl
         dict(plain, kernel=(3, 3))),
        ("conv_transpose", (g, w1.astype("float64"), None), dict(plain, size=(7, 7))),  # mixed
        ("conv_weight", (x[..., 0], g[..., 0]),  # one spatial dim
         dict(stride=(1,), padding=((0, 0),), dilation=(1,), groups=1, kernel=(3,))),
    ]
    before = dict(cconv.TAKEN)
    for name, args, params in calls:
        want = cr.primitives.REGISTRY[name].impl(np, *args, **params)
        got = lib[name](np, *args, **params)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    with fast_paths(False):  # the impls' general code, as eager
        np.testing.assert_array_equal(lib["conv_weight"](np, x, g, kernel=(3, 3), **plain),
                                      RAW.conv_weight(x, g, kernel=(3, 3), **plain))
    assert dict(cconv.TAKEN) == before
    # windows that do not fit the input: the impl's own error
    with pytest.raises(ValueError):
        lib["conv_weight"](np, x, rng.standard_normal((2, 4, 6, 6)).astype("float32"),
                           kernel=(3, 3), **plain)


def test_jitted_conv_net_gradients_in_float64():
    """The C loops inside a compiled step: gradients of a small conv net against eager's and
    against finite differences of the loss along random directions (float64)."""
    rng = np.random.default_rng(6)
    x = cr.tensor(rng.standard_normal((3, 2, 9, 9)))
    w1 = cr.tensor(rng.standard_normal((5, 2, 3, 3)) * 0.3, requires_grad=True)
    b1 = cr.tensor(rng.standard_normal(5) * 0.3, requires_grad=True)
    w2 = cr.tensor(rng.standard_normal((4, 5, 3, 3)) * 0.3, requires_grad=True)
    params = (w1, b1, w2)

    def loss():
        h = cr.ops.conv.conv2d(x, w1, b1, padding=1).tanh()
        return (cr.ops.conv.conv2d(h, w2, None, dilation=2) ** 2).sum()

    def step():
        for t in params:
            t.grad = None
        loss().backward()
        return [t.grad for t in params]

    want = [gr.numpy().copy() for gr in step()]
    f = cr.jit(step, fullgraph=True, backend="c")
    before = dict(cconv.TAKEN)
    for _ in range(3):
        got = [gr.numpy().copy() for gr in f()]
    for name in ("conv_weight", "conv_transpose"):
        assert cconv.TAKEN[name] > before.get(name, 0), name
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    base = [t.numpy(force=True).copy() for t in params]
    eps = 1e-6
    for k in range(2):
        us = [rng.standard_normal(v.shape) for v in base]
        vals = []
        for sgn in (1, -1):
            for t, v, u in zip(params, base, us):
                t.numpy(force=True)[...] = v + sgn * eps * u
            with cr.no_grad():
                vals.append(float(loss().numpy()))
        for t, v in zip(params, base):
            t.numpy(force=True)[...] = v
        num = (vals[0] - vals[1]) / (2 * eps)
        ana = sum(float(np.sum(gr * u)) for gr, u in zip(got, us))
        assert np.isclose(ana, num, rtol=1e-6, atol=1e-6), (k, ana, num)


def test_weight_gradient_is_the_same_at_one_and_two_threads():
    """conv_weight's sums follow fixed runs of images, not the threads: bitwise the same
    result under OMP_NUM_THREADS=1 and 2 (LeNet's conv2, big enough to use the threads)."""
    code = textwrap.dedent("""
        import hashlib, numpy as np
        from chainrule.jit import cconv, kcache, render_c
        decl, src = cconv.source()
        mod, _ = kcache.load(decl, render_c.PRELUDE + src)
        cw = cconv.wrappers(mod.lib, mod.ffi)["conv_weight"]
        rng = np.random.default_rng(8)
        x = rng.standard_normal((64, 6, 14, 14)).astype("float32")
        g = rng.standard_normal((64, 16, 10, 10)).astype("float32")
        p = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
        for _ in range(8):  # several calls: which thread takes which run varies
            dw = cw(np, x, g, kernel=(5, 5), **p)
            print(hashlib.sha256(dw.tobytes()).hexdigest())
        assert cconv.TAKEN["conv_weight"] == 8
    """)
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        digests.update(run.stdout.split())
    assert len(digests) == 1, digests
