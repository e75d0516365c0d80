"""Backend "c"'s layer-norm backward fused with its affine step's (``creduce.fuse_layer_norm``
and the ``ln_affine_vjp`` loop) against the unfused program.

The fused loop makes the same operations in the same order as the unfused C program
(``kernel.layer_norm_vjp_rows``'s C loop, the affine kernel's multiplies, the column sums
adding the rows in order, the gradient add), so it is compared bitwise with it; against the
NumPy impls (other orders of the row sums) within rounding of the largest magnitude. Through
the jit, values and gradients against the numpy backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cbackend import _run_both
from test_creduce import _close, _data, _lib

import chainrule as cr
from chainrule.jit import cbackend, creduce
from chainrule.primitives.reduce import _ln_vjp_rows

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend 'c': {cbackend.unavailable()}")

# (x's shape, normalised axes): rows of 1 to 3000 (the loops go parallel over rows from about
# 100k elements, the backward's column sums then over column blocks), widths 1 to 128, two
# trailing axes
SHAPES = [((1, 1), (1,)), ((3, 7), (1,)), ((65, 128), (1,)), ((1000, 128), (1,)),
          ((3000, 96), (1,)), ((2, 5, 33), (2,)), ((3, 4, 5, 6), (2, 3)), ((4, 2), (1,))]


def _unfused_backward(g, w, x, h, acc, axes, sums):
    """The unfused C program: the raw backward of g * w (+ acc), the column sums (C) of
    g * h, g and that dx."""
    lib = _lib()
    dx = lib["kernel.layer_norm_vjp_rows"](np.multiply(g, w), x, h, axes, 1e-5)
    outs = [dx if acc is None else np.add(acc, dx)]
    shape = x.shape[x.ndim - len(axes):]
    for k in sums:
        outs.append(lib["sum_to"](np, {"w": np.multiply(g, h), "b": g}.get(k, outs[0]),
                                  shape=shape))
    return outs


def _args(shape, axes, dtype, seed=0):
    p = shape[len(shape) - len(axes):]
    x = _data(shape, dtype, seed)
    return x, _data(p, dtype, seed + 1), _data(p, dtype, seed + 2), _data(shape, dtype, seed + 3)


def _equal_or_close(got, want, shape, axes, dtype, k):
    """Bitwise, except a column sum over one column, which the unfused program leaves to
    NumPy's pairwise sum (the fused loop adds in order): within rounding there."""
    assert got.dtype == want.dtype and got.shape == want.shape
    if k > 0 and np.prod(shape[len(shape) - len(axes):]) < 2:
        _close(got, want, dtype)
    else:
        np.testing.assert_array_equal(got, want)


def _near(got, want, dtype):
    """Within rounding: relative 1e-5 (float32) / 1e-12 (float64) of the largest magnitude."""
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = float(np.max(np.abs(want), initial=1.0))
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=(1e-5 if dtype == "float32" else 1e-12) * scale)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,axes", SHAPES)
@pytest.mark.parametrize("sums", ["wbx", "bw", "w", "b", "x", ""])
def test_backward_is_the_unfused_program_bitwise(shape, axes, dtype, sums):
    x, w, _, g = _args(shape, axes, dtype, seed=5)
    h = _lib()["layer_norm"](np, x, axes=axes, eps=1e-5)
    for acc in (None, _data(shape, dtype, 9)):
        got = _lib()["kernel.layer_norm_affine_vjp"](g, w, x, h, acc, axes, 1e-5, sums)
        got = list(got) if sums else [got]
        want = _unfused_backward(g, w, x, h, acc, axes, sums)
        assert len(got) == len(want) == 1 + len(sums)
        for k, (a, b) in enumerate(zip(got, want)):
            _equal_or_close(a, b, shape, axes, dtype, k)
        # and the impls (NumPy's orders of the sums) to rounding, relative to the largest
        # magnitude (the raw backward subtracts row means: cancellation)
        dx = _ln_vjp_rows(g * w, x, h, axes, 1e-5)
        lead = tuple(range(x.ndim - len(axes)))
        wants = [dx if acc is None else acc + dx]
        wants += [{"w": g * h, "b": g}.get(k, wants[0]).sum(axis=lead) for k in sums]
        for a, b in zip(got, wants):
            _near(a, b, dtype)


def test_non_contiguous_inputs():
    base = _data((40, 2 * 128), "float32", 3)
    x = base[:, ::2]  # strided
    w = _data((256,), "float32", 4)[::2]
    g = _data((128, 40), "float32", 6).T  # a transpose
    h = _lib()["layer_norm"](np, np.ascontiguousarray(x), axes=(1,), eps=1e-5)
    acc = _data((40, 256), "float32", 7)[:, 1::2]
    got = _lib()["kernel.layer_norm_affine_vjp"](g, w, x, h[:, :], acc, (1,), 1e-5, "wbx")
    want = _unfused_backward(np.ascontiguousarray(g), np.ascontiguousarray(w),
                             np.ascontiguousarray(x), h, np.ascontiguousarray(acc), (1,), "wbx")
    for a, b_ in zip(got, want):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_propagate_as_in_the_unfused_program(dtype):
    x, w, b, g = _args((6, 20), (1,), dtype, seed=2)
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    w[5] = np.inf
    b[7] = np.nan
    g[4, 2] = -np.inf
    g[3, 9] = np.nan
    h = _lib()["layer_norm"](np, x, axes=(1,), eps=1e-5)
    assert np.isnan(h[1]).all()
    acc = _data((6, 20), dtype, 4)
    acc[0, 0] = np.nan
    got = _lib()["kernel.layer_norm_affine_vjp"](g, w, x, h, acc, (1,), 1e-5, "wbx")
    want = _unfused_backward(g, w, x, h, acc, (1,), "wbx")
    for a, b_ in zip(got, want):
        np.testing.assert_array_equal(a, b_)
    assert np.isnan(got[0][0, 0]) and np.isnan(got[1][9]) and np.isnan(got[2][9])
    assert np.isnan(got[3][0])


def test_calls_the_loops_do_not_cover_run_the_unfused_impls():
    lib = _lib()
    x = _data((5, 8), "float16")
    w = _data((8,), "float16", 1)
    got = lib["kernel.layer_norm_affine_vjp"](x, w, x, x, x, (1,), 1e-5, "wbx")
    want = creduce._ln_affine_vjp_np(x, w, x, x, x, (1,), 1e-5, "wbx")
    assert [a.dtype for a in got] == [np.float16] * 4
    for a, b_ in zip(got, want):
        np.testing.assert_array_equal(a, b_)
    x32 = _data((5, 8), "float32")
    w64 = _data((8,), "float64", 1)  # a parameter of another dtype
    got = lib["kernel.layer_norm_affine_vjp"](x32, w64, x32, x32, None, (1,), 1e-5, "b")
    want = creduce._ln_affine_vjp_np(x32, w64, x32, x32, None, (1,), 1e-5, "b")
    for a, b_ in zip(got, want):
        np.testing.assert_array_equal(a, b_)
    e = np.zeros((0, 8), "float32")  # empty
    dx, db = lib["kernel.layer_norm_affine_vjp"](e, w.astype("float32"), e, e, None, (1,), 1e-5,
                                                "b")
    assert dx.shape == (0, 8) and db.tolist() == [0.0] * 8


# ---------------------------------------------------------------- the pass and the jit
def _ln_block(x, w, b, r, c):
    """A pre-norm residual block's shape: ``x + linear(layer_norm(x))`` twice, so the second
    layer norm's backward has a gradient to add to, and its dx a column sum (the first
    linear's bias gradient)."""
    F = cr.nn.functional
    n = x.shape[-1]
    y = x + F.linear(F.layer_norm(x, (n,), w, b), r, c)
    return y + F.layer_norm(y, (n,), w * 0.5, b) @ r


def _fused_names(f):
    return [op.name for op in f._program(-1).graph.ops if op.name.startswith("kernel.layer_norm")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 17), (2, 5, 33), (65, 128)])
def test_through_the_jit_values_and_gradients_match_the_numpy_backend(shape, dtype,
                                                                       monkeypatch):
    # this test compares with the numpy backend itself, to each result's scale; verify's
    # element-wise tolerance does not fit column sums made in another order (cancellation)
    monkeypatch.delenv("CHAINRULE_JIT_VERIFY", raising=False)
    n = shape[-1]
    arrays = [_data(shape, dtype, 1), _data((n,), dtype, 2), _data((n,), dtype, 3),
              _data((n, n), dtype, 4) / n, _data((n,), dtype, 5)]
    before = dict(creduce.TAKEN)
    want, got, f = _run_both(_ln_block, *arrays)
    assert len(got) == len(want) == 6
    for a, b in zip(got, want):  # relative to each result's largest magnitude: the gradients
        # pass through products and row means (cancellation), summed in other orders
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=0,
                                   atol=(1e-5 if dtype == "float32" else 1e-12) * scale)
    names = _fused_names(f)
    assert names.count("kernel.layer_norm_affine_vjp") == 2, f.kernel_graph()
    assert "kernel.layer_norm_vjp_rows" not in names
    assert creduce.TAKEN["layer_norm_affine_vjp"] >= before.get("layer_norm_affine_vjp", 0) + 4
    # the second backward took the gradient it is added to and the column sum of its dx, both
    # took the weight's and the bias's sums
    text = f.kernel_graph()
    assert text.count("'wbx'") == 1 and text.count("'wb'") == 1, text
    assert "sum_to" not in text, text


def test_the_pass_fuses_only_the_pattern():
    F = cr.nn.functional

    def grads(x, w, b, twice):
        x = x.detach().requires_grad_()
        w = w.detach().requires_grad_()
        b = b.detach().requires_grad_()
        h = F.layer_norm(x, (8,))
        y = h * w + b
        loss = (y * y).sum() + (((h * w) * 2.0).sum() if twice else 0.0)
        return cr.autograd.grad(loss, [x, w, b])

    args = [cr.tensor(_data(s, "float32", k)) for k, s in ((1, (4, 8)), (2, (8,)), (3, (8,)))]
    for twice, fused in ((False, 1), (True, None)):
        f = cr.jit(lambda x, w, b, t=twice: grads(x, w, b, t), backend="numpy")
        f(*args)
        f(*args)
        names = [op.name for op in creduce.fuse_layer_norm(f.graph_ir()).ops]
        if fused:
            assert names.count("kernel.layer_norm_affine_vjp") == 1, names
            assert "kernel.layer_norm_vjp_rows" not in names
            # the graph it was given is left as it was
            assert "kernel.layer_norm_vjp_rows" in [op.name for op in f.graph_ir().ops]
        else:  # h's cotangent is a sum of two products, not one g * w: left as it was
            assert "kernel.layer_norm_affine_vjp" not in names, names
            assert "kernel.layer_norm_vjp_rows" in names
