"""Backend c's cross-entropy loop (``jit/closs.py``): the C pass against the recorded NumPy
ops it replaces (values and gradients, float32 and float64, odd sizes, NaN/inf, the rows on
OpenMP's threads or not), the pattern pass on traced steps, and a bad label's error."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import cbackend, closs, kcache, render_c

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend c unavailable: {cbackend.unavailable()}")

F = cr.nn.functional


def _loop(name="kernel.cross_entropy"):
    decl, src = closs.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return closs.wrappers(mod.lib, mod.ffi)[name]


@pytest.mark.parametrize("labels", [[0, 4, 2], [-100, 1, 3], [5, 0, 1], [-1, 2, -100],
                                    [-100], [3], [-7, 9, 2, 0, 4]], ids=str)
def test_target_checks_in_one_call_as_the_recorded_ops(labels):
    checks = _loop("kernel.target_checks")
    t = np.array(labels, np.int64)
    which = ("any", "idx", "lo", "hi", "all")
    for args in ((-100, 5, -5, 5), (0, 5, -5, 5), (-100, 3, -3, 3)):
        got = checks(t, *args, which)
        want = closs._target_checks_np(t, *args, which)
        for g, w in zip(got, want):
            assert type(g) is type(w) and np.shape(g) == np.shape(w)
            np.testing.assert_array_equal(g, w)
    huge = checks(t, 1 << 70, 5, -5, 5, which)  # an ignore_index C's long long cannot hold
    for g, w in zip(huge, closs._target_checks_np(t, 1 << 70, 5, -5, 5, which)):
        np.testing.assert_array_equal(g, w)
    got = checks(t, -100, 5, 0, 0, ("any", "idx"))  # without the limits
    np.testing.assert_array_equal(got[1], closs._target_checks_np(t, -100, 5, 0, 0,
                                                                  ("idx",)))


def _inputs(n, c, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    t = rng.integers(0, c, (n, 1))
    g = np.full((n, 1), -1.0 / n, dtype)
    return x, t, g


# float32: the loop's expf/logf (glibc) and NumPy's vectorised exp/log may differ by an ulp
# each; the values then agree to a few ulps of the row's scale
TOL = {"float32": dict(rtol=2e-6, atol=2e-7), "float64": dict(rtol=1e-14, atol=1e-16)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(128, 10), (7, 13), (3, 1), (1, 8), (37, 300), (130, 1031)],
                         ids=str)
@pytest.mark.parametrize("par", [0, 1], ids=["one_thread", "omp"])
def test_loop_matches_the_recorded_ops(shape, dtype, par, monkeypatch):
    monkeypatch.setattr(closs, "PARALLEL", [par])
    ce = _loop()
    x, t, g = _inputs(*shape, dtype)
    t[0, 0] = -1  # a negative index within [-C, 0) reads from the end, as take_along_axis
    for c, scale in ((g, 1.0 / shape[0]), (None, 1.0 / shape[0]), (g, None), (None, None)):
        want = closs._cross_entropy_np(x, t, c, scale)
        got = ce(x, t, c, scale)
        if c is None:
            want, got = (want,), (got,)
        for a, b in zip(got, want):
            assert a.dtype == np.dtype(dtype) and a.shape == np.shape(b)
            np.testing.assert_allclose(a, b, **TOL[dtype])
    # with the bias gradient: dx's rows added in order (bitwise), close to the impl's sum_to
    loss, dx, cs = ce(x, t, g, 1.0 / shape[0], True) if shape[1] >= 2 else (None, None, None)
    if cs is not None:
        acc = dx[0].copy()
        for r in dx[1:]:
            acc += r
        assert cs.tobytes() == acc.tobytes()
        want = closs._cross_entropy_np(x, t, g, 1.0 / shape[0], True)
        for a, b in zip((loss, dx, cs), want):
            np.testing.assert_allclose(a, b, **TOL[dtype])
    # against float64 arithmetic: float32 rounding only
    loss, dx = ce(x, t, g, 1.0 / shape[0])
    l64, d64 = closs._cross_entropy_np(x.astype(np.float64), t, g.astype(np.float64),
                                       1.0 / shape[0])
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(loss, l64, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, d64, rtol=tol, atol=tol)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_as_the_recorded_ops(dtype):
    ce = _loop()
    x, t, g = _inputs(6, 9, dtype, seed=1)
    x[0, 2] = np.nan
    x[1, 4] = np.inf
    x[2, :] = -np.inf
    x[3, 1] = -np.inf
    t[3, 0] = 1  # the target at -inf: an infinite loss
    g[4, 0] = np.inf
    want = closs._cross_entropy_np(x, t, g, 1.0 / 6)
    got = ce(x, t, g, 1.0 / 6)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
        np.testing.assert_allclose(a, b, **TOL[dtype])
    # per row, without the NaN/inf rows spreading into the loss
    rows = [ce(x[i:i + 1], t[i:i + 1], None, None) for i in range(6)]
    want_rows = [closs._cross_entropy_np(x[i:i + 1], t[i:i + 1], None, None) for i in range(6)]
    np.testing.assert_allclose(np.array(rows), np.array(want_rows), **TOL[dtype])


def test_out_of_range_target_runs_the_recorded_ops_and_their_error():
    ce = _loop()
    x, t, g = _inputs(4, 5, "float32")
    t[2, 0] = 5
    with pytest.raises(IndexError):
        ce(x, t, g, 0.25)
    t[2, 0] = -6
    with pytest.raises(IndexError):
        ce(x, t, g, 0.25)


def test_non_contiguous_inputs_and_other_dtypes_fall_back_or_copy():
    ce = _loop()
    x, t, g = _inputs(8, 12, "float64")
    xt = np.asfortranarray(x)
    for a, b in zip(ce(xt, t, g, 0.125), closs._cross_entropy_np(x, t, g, 0.125)):
        np.testing.assert_allclose(a, b, **TOL["float64"])
    x16 = x.astype(np.float16)  # not a C loop's dtype: the recorded ops
    for a, b in zip(ce(x16, t, g.astype(np.float16), 0.125),
                    closs._cross_entropy_np(x16, t, g.astype(np.float16), 0.125)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- traced steps
def _mlp_step(dtype, n, c, **kw):
    rng = np.random.default_rng(5)
    w = cr.tensor((rng.standard_normal((c, 6)) * 0.5).astype(dtype), requires_grad=True)
    b = cr.tensor(np.zeros(c, dtype), requires_grad=True)
    x = cr.tensor(rng.standard_normal((n, 6)).astype(dtype))
    y = cr.tensor(rng.integers(0, c, n))

    def step(labels):
        loss = F.cross_entropy(F.linear(x, w, b), labels, **kw)
        loss.backward()
        gw, gb = w.grad, b.grad
        w.grad = b.grad = None
        return loss, gw, gb

    return step, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(128, 10), (5, 3), (33, 129), (4, 1)], ids=str)
def test_traced_step_fuses_the_loss_and_matches_the_numpy_backend(shape, dtype):
    step, y = _mlp_step(dtype, *shape)
    fc = cr.jit(step, backend="c")
    fn = cr.jit(step, backend="numpy")
    for _ in range(3):
        got, want = fc(y), fn(y)
    names = [op.name for op in fc._program(-1).graph.ops]
    assert "kernel.cross_entropy" in names and "log_softmax" not in names, names
    # the last layer's bias gradient made in the loss's call (one column: NumPy's sum_to)
    assert ("sum_to" in names) == (shape[1] < 2), names
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **TOL[dtype])


def test_forward_only_loss_fuses_too():
    rng = np.random.default_rng(2)
    x = cr.tensor(rng.standard_normal((9, 7)).astype(np.float32))
    y = cr.tensor(rng.integers(0, 7, 9))
    for red in ("mean", "sum", "none"):
        f = cr.jit(lambda a, t, red=red: F.cross_entropy(a, t, reduction=red), backend="c")
        for _ in range(2):
            got = f(x, y)
        fused = "kernel.cross_entropy" in [op.name for op in f._program(-1).graph.ops]
        assert fused == (red != "none")
        np.testing.assert_allclose(got.numpy(), F.cross_entropy(x, y, reduction=red).numpy(),
                                   **TOL["float32"])


@pytest.mark.parametrize("kw", [
    dict(weight=cr.tensor(np.linspace(0.5, 2, 4, dtype=np.float32)), reduction="sum"),
    dict(label_smoothing=0.1, reduction="sum")], ids=["weight", "smoothing"])
def test_other_forms_are_left_unfused_and_still_right(kw):
    step, y = _mlp_step("float32", 6, 4, **kw)
    fc = cr.jit(step, backend="c")
    for _ in range(2):
        got = fc(y)
    want = step(y)
    names = [op.name for op in fc._program(-1).graph.ops]
    assert "kernel.cross_entropy" not in names, names
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_ignore_index_present_in_the_labels_is_not_the_fused_form():
    """A batch with an ignored label fails the fused program's guard (every label valid) and
    runs as eager does (its mean reads the count on the host: a graph break)."""
    step, y = _mlp_step("float32", 8, 5)
    fc = cr.jit(step, backend="c")
    for _ in range(3):
        fc(y)
    assert "kernel.cross_entropy" in [op.name for op in fc._program(-1).graph.ops]
    yd = y.numpy().copy()
    yd[3] = -100
    for _ in range(2):
        got = fc(cr.tensor(yd))
    want = step(cr.tensor(yd))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_bad_label_raises_eagers_error():
    step, y = _mlp_step("float32", 8, 5)
    fc = cr.jit(step, backend="c")
    for _ in range(3):
        fc(y)
    names = [op.name for op in fc._program(-1).graph.ops]
    assert "kernel.cross_entropy" in names and "kernel.target_checks" in names, names
    assert "np.where" not in names and "np.not_equal" not in names, names
    bad = y.numpy().copy()
    bad[2] = 5
    with pytest.raises(IndexError, match="nll_loss: target 5 is out of bounds for 5 classes"):
        fc(cr.tensor(bad))
    bad[2] = -3
    with pytest.raises(IndexError, match="nll_loss: target -3 is out of bounds for 5 classes"):
        fc(cr.tensor(bad))
    got = fc(y)  # and a good batch after the errors runs the program again
    assert np.isfinite(got[0].item())
