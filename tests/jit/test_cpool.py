"""Backend "c": 2-d max pooling and its backward as C loops over the planes (``jit/cpool.py``),
bitwise against the impls (``primitives/conv.py``), on one thread and spread over the threads
(``cpool.PARALLEL``), with ties, signed zeros, NaN and inf, padding, strides and dilation."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import cpool, kcache, render_c
from chainrule.primitives import REGISTRY, fast_paths

CASES = [  # N, C, H, W, kernel, stride, padding, dilation
    (4, 3, 28, 28, (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),  # LeNet's pooling
    (3, 2, 11, 9, (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),  # odd sizes: a row, a column left
    (3, 2, 11, 9, (2, 2), (2, 2), ((0, 1), (0, 1)), (1, 1)),  # odd sizes, ceil-mode padding
    (1, 1, 7, 8, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # overlapping windows, batch 1
    (2, 3, 10, 12, (3, 2), (2, 1), ((1, 0), (0, 1)), (1, 2)),  # dilation, mixed strides
    (3, 1, 5, 5, (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1)),  # one offset
    (1, 2, 6, 7, (3, 3), (3, 2), ((2, 2), (1, 2)), (1, 1)),  # whole rows of padding
]


@pytest.fixture(scope="module")
def ops():
    decl, src = cpool.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return cpool.wrappers(mod.lib, mod.ffi)


def _impl(name, *args, **p):
    return REGISTRY[name].impl(np, *args, **p)


def _data(case, dtype, seed, special):
    n, c, h, w = case[:4]
    rng = np.random.default_rng(seed)
    # few distinct values, so that windows hold ties (the first maximum must win)
    x = rng.integers(-3, 4, (n, c, h, w)).astype(dtype)
    x[x == 0] = rng.choice(np.array([0.0, -0.0], dtype), int((x == 0).sum()))
    if special:
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, min(6, flat.size), replace=False)
        flat[picks] = np.array([np.nan, np.inf, -np.inf, np.nan, -np.inf, np.inf],
                               dtype)[:len(picks)]
    return x


@pytest.mark.parametrize("threshold", [1 << 62, 0], ids=["one-thread", "threads"])
@pytest.mark.parametrize("special", [False, True], ids=["finite", "nan-inf"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
def test_bitwise_the_impls(ops, monkeypatch, case, dtype, special, threshold):
    monkeypatch.setattr(cpool, "PARALLEL", threshold)
    kernel, stride, padding, dilation = case[4:]
    p = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    x = _data(case, dtype, 0, special)
    before = dict(cpool.TAKEN)
    y = ops["max_pool"](np, x, **p)
    want_y = _impl("max_pool", x, **p)
    assert y.dtype == want_y.dtype and y.shape == want_y.shape
    np.testing.assert_array_equal(y, want_y)
    assert np.array_equal(np.signbit(y), np.signbit(want_y))
    idx = ops["max_pool_index"](np, x, y, **p)
    want_idx = _impl("max_pool_index", x, want_y, **p)
    assert idx.dtype == want_idx.dtype
    np.testing.assert_array_equal(idx, want_idx)
    rng = np.random.default_rng(1)
    g = rng.standard_normal(y.shape).astype(dtype)
    if special:
        g.reshape(-1)[[0, -1]] = [np.inf, np.nan]
    z = ops["window_scatter"](np, g, idx, size=x.shape[2:], **p)
    want_z = _impl("window_scatter", g, want_idx, size=x.shape[2:], **p)
    assert z.dtype == want_z.dtype and z.shape == want_z.shape
    np.testing.assert_array_equal(z, want_z)
    assert np.array_equal(np.signbit(z), np.signbit(want_z))  # g * 0 is -0.0 for g < 0
    for name in cpool.PRIMS:
        assert cpool.TAKEN[name] == before.get(name, 0) + 1, name


def test_index_without_a_match_is_the_last_offset(ops):
    """An ``out`` that no window element equals: the impl's default, the last offset."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    p = dict(kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1))
    out = np.full((1, 1, 2, 2), 0.5, np.float32)
    np.testing.assert_array_equal(ops["max_pool_index"](np, x, out, **p),
                                  _impl("max_pool_index", x, out, **p))


def test_uncovered_calls_run_the_impl(ops):
    p = dict(kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1))
    before = dict(cpool.TAKEN)
    x16 = np.ones((1, 1, 4, 4), np.float16)  # another dtype
    assert ops["max_pool"](np, x16, **p).dtype == np.float16
    x1d = np.ones((1, 1, 4), np.float32)  # one spatial dim
    assert ops["max_pool"](np, x1d, kernel=(2,), stride=(2,), padding=((0, 0),),
                           dilation=(1,)).shape == (1, 1, 2)
    with fast_paths(False):
        ops["max_pool"](np, np.ones((1, 1, 4, 4), np.float32), **p)
    assert dict(cpool.TAKEN) == before


def test_non_contiguous_input(ops):
    x = np.random.default_rng(2).standard_normal((3, 2, 9, 10)).astype(np.float32)
    xt = x.transpose(0, 1, 3, 2)
    p = dict(kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1))
    np.testing.assert_array_equal(ops["max_pool"](np, xt, **p), _impl("max_pool", xt, **p))


def test_jitted_pool_step_is_eager_bitwise():
    """A jitted conv, relu and pooling step on backend c against eager (float64): the pooling
    loops ran, and the gradients are eager's bits (the convolution's input gradient is not
    in the graph: the input needs none)."""
    rng = np.random.default_rng(3)
    x = cr.tensor(rng.standard_normal((5, 2, 12, 11)))
    w = cr.tensor(rng.standard_normal((3, 2, 3, 3)) * 0.3, requires_grad=True)

    def step():
        w.grad = None
        h = cr.ops.conv.conv2d(x, w, None, padding=1).relu()
        (cr.nn.functional.max_pool2d(h, 2, ceil_mode=True) ** 2).sum().backward()
        return w.grad

    want = step().numpy().copy()
    f = cr.jit(step, fullgraph=True, backend="c")
    before = dict(cpool.TAKEN)
    for _ in range(3):
        got = f().numpy().copy()
    for name in cpool.PRIMS:
        assert cpool.TAKEN[name] > before.get(name, 0), name
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
