"""Backend "c": a residual add of a ``linear``'s product folded into the product
(``cgemm.fold_residual_adds``: ``kernel.linear_add(x, w, b, r)``, the output's rows filled with
``r + b`` and the product added by the BLAS call with ``beta = 1``) against the unfused ops
(the impl's ``linear``, then ``r +``): the sums are made in another order, so they agree to a
relative 1e-5 (float32) or 1e-12 (float64) with a small absolute term for sums near zero.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cbackend import _run_both
from test_cgemm import _data, _lib, _tol

import chainrule as cr
from chainrule.jit import cbackend, cgemm

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend 'c': {cbackend.unavailable()}")


def _case(x, w, b, r, dtype, taken=True):
    before = cgemm.TAKEN["linear_add"]
    got = _lib()["kernel.linear_add"](x, w, b, r)
    want = cgemm._linear_add_np(x, w, b, r)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, **_tol(dtype))
    assert cgemm.TAKEN["linear_add"] == before + taken
    return got


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_add_matches_the_unfused_ops(dtype):
    for m, k, n in ((1, 1, 1), (7, 3, 5), (65, 129, 64), (2, 600, 33)):
        x, w, b = _data((m, k), dtype, m), _data((n, k), dtype, k), _data((n,), dtype, n)
        r = _data((m, n), dtype, m * n)
        _case(x, w, b, r, dtype)
        _case(x, w, None, r, dtype)
    x, w, b = _data((4, 9, 24), dtype), _data((40, 24), dtype, 1), _data((40,), dtype, 2)
    r = _data((4, 9, 40), dtype, 3)
    assert _case(x, w, b, r, dtype).shape == (4, 9, 40)
    _case(x, _data((24, 40), dtype, 4).T, b, r, dtype)  # a transposed weight: not copied
    _case(_data((4, 9, 48), dtype, 5)[..., ::2], w, b, r, dtype)  # a strided input
    _case(x, w, b, _data((4, 9, 80), dtype, 6)[..., ::2], dtype)  # a strided residual
    r = _data((4, 9, 40), dtype, 7)
    r[0, 0, 0], r[1, 2, 3], x[2, 0, 5] = np.nan, np.inf, -np.inf
    got = _case(x, w, b, r, dtype)
    assert np.isnan(got[0, 0, 0]) and np.isinf(got[1, 2, 3]) and not np.isfinite(got[2, 0]).any()


def test_linear_add_falls_back_where_it_does_not_apply():
    x, w = _data((5, 4), "float32"), _data((3, 4), "float32", 1)
    r = _data((5, 3), "float32", 2)
    _case(x, w, None, r.astype("float64"), "float32", taken=False)  # another dtype: promotes
    _case(x, w, None, r[:1], "float32", taken=False)  # a broadcast residual
    _case(x, w.astype("float64"), None, r, "float32", taken=False)
    with pytest.raises(ValueError):  # the impl's error on shapes that do not fit
        _lib()["kernel.linear_add"](x, _data((3, 5), "float32"), None, r)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_residual_adds_fold_through_the_jit(dtype):
    """Values and gradients on backend c against the numpy backend: residual adds of a
    linear with and without bias, on either side of the add, folded (and the backward's
    ``acc + linear(g, w.T)``); one whose product is also read elsewhere is not."""
    def fn(x, w, b, w2):
        h = x + cr.nn.functional.linear(x, w, b)
        h = cr.nn.functional.linear(h.tanh(), w2) + h
        p = cr.nn.functional.linear(h, w, b)  # read twice: not folded
        return ((h + p) * p).sum()

    arrays = (_data((2, 7, 19), dtype), _data((19, 19), dtype, 1), _data((19,), dtype, 2),
              _data((19, 19), dtype, 3))
    before = cgemm.TAKEN["linear_add"]
    want, got, f = _run_both(fn, *arrays)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == "float32" else 1e-10,
                                   atol=1e-4 if dtype == "float32" else 1e-10)
    names = [op.name for op in f._program(-1).graph.ops]
    # the forward's two, and backward's gradient adds of the form acc + linear(g, w.T)
    assert names[:3] == ["kernel.linear_add", "tanh", "kernel.linear_add"], names
    assert names.count("kernel.linear_add") >= 2 and "linear" in names, names
    assert cgemm.TAKEN["linear_add"] >= before + 4  # two a call, two replays


def test_the_pass_leaves_graphs_without_the_pattern_alone():
    f = cr.jit(lambda x, w: (cr.nn.functional.linear(x, w) * 2.0 + x).sum(), backend="numpy")
    x, w = cr.ones((3, 4)), cr.ones((4, 4))
    f(x, w), f(x, w)
    g = f.graph_ir()
    assert cgemm.fold_residual_adds(g) is g
