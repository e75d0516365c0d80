"""Backend "c": ``linear``'s two layouts of the product (``jit/cgemm.py``): the row-major call
``y = x W^T`` ("direct") and ``y^T = W x^T`` into a scratch then transposed ("transposed"),
the per-shape trial between them and what ``explain()`` says of it; ``relu(linear)`` as one
call (``cgemm.fuse_linear_relu``: the direct arm bitwise the impls of linear then relu); the
ops a fusion group moves after its kernel keeping their C versions (``jit/cbackend.py``); and
two rules of
``fuse.find_kernels``: the ReLU mask made in its multiply's kernel, and no group carrying a
guard's value past later work.

Both arms add the bias at the same place, but OpenBLAS may take another kernel for the rows
and columns left over after its tiles in one layout than in the other (float64 (65, 129) x
(64, 129)^T: its last row differed in the last bit), so the arms are compared with each other
and with the impl (which adds the bias after the product) within rounding; on the MLP's
float32 shapes they came out bitwise equal (docs/jit.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cbackend import _run_both
from test_cgemm import _wrappers

import chainrule as cr
from chainrule.jit import cbackend, cgemm
from chainrule.primitives import REGISTRY

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend 'c': {cbackend.unavailable()}")

def _all():
    """cgemm's wrappers on its compiled source (test_cgemm's, compiled once)."""
    return _wrappers(cgemm)


def _linear():
    return _all()["linear"]


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.fixture
def layout():
    """Sets cgemm.LAYOUT for a test and puts it back."""
    before = cgemm.LAYOUT[0]
    yield cgemm.LAYOUT
    cgemm.LAYOUT[0] = before


def _arms(x, w, b, layout):
    """The direct and the transposed arm's results, checked against the impl."""
    out = []
    for arm in ("direct", "transposed"):
        layout[0] = arm
        before = dict(cgemm.TAKEN)
        got = _linear()(np, x, w, b)
        assert cgemm.TAKEN["linear"] == before.get("linear", 0) + 1
        assert cgemm.TAKEN["linear_t"] == before.get("linear_t", 0) + (arm == "transposed")
        want = REGISTRY["linear"].impl(np, x, w, b)
        assert got.shape == want.shape and got.dtype == want.dtype
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        out.append(got)
    np.testing.assert_allclose(out[0], out[1], rtol=tol, atol=tol)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_two_layouts_agree(dtype, layout):
    for m, k, n in ((1, 1, 1), (7, 3, 5), (33, 65, 31), (65, 129, 64), (300, 17, 1),
                    (2, 600, 33), (128, 784, 40), (40, 13, 97)):
        x, w, b = _data((m, k), dtype, m), _data((n, k), dtype, k), _data((n,), dtype, n)
        for bias in (b, None):
            _arms(x, w, bias, layout)
    # a 3-d input (the transformer's (batch, seq, features))
    d, _ = _arms(_data((3, 9, 24), dtype), _data((40, 24), dtype, 1), _data((40,), dtype, 2),
                 layout)
    assert d.shape == (3, 9, 40)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_transposed_layout_reads_operands_as_they_lie(dtype, layout):
    x, wt, b = _data((35, 20), dtype), _data((20, 18), dtype, 1), _data((18,), dtype, 2)
    cases = [
        (x, wt.T, b),                                  # w the transpose of a C array
        (_data((20, 35), dtype, 3).T, wt.T, b),        # both transposed
        (_data((20, 35), dtype, 3).T, _data((18, 20), dtype, 4), None),  # only x
        (_data((35, 40), dtype, 5)[:, ::2], _data((18, 40), dtype, 6)[:, ::2], b),  # strided
        (np.broadcast_to(_data((20,), dtype, 7), (35, 20)), wt.T, b),  # stride-0 input
        (x, wt.T, np.broadcast_to(b[:1], (18,))),      # stride-0 bias
        (_data((2, 35, 20), dtype, 8)[:, ::3], wt.T, b),  # 3-d strided
    ]
    for x_, w_, b_ in cases:
        _arms(x_, w_, b_, layout)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_transposed_layout_propagates_nan_and_inf(dtype, layout):
    x, w, b = _data((40, 9), dtype), _data((37, 9), dtype, 1), _data((37,), dtype, 2)
    x[1, 2], x[3, 0], b[2], w[5, 4] = np.nan, np.inf, -np.inf, np.nan
    layout[0] = "transposed"
    got = _linear()(np, x, w, b)
    want = REGISTRY["linear"].impl(np, x, w, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert np.isnan(got[1]).all() and np.isnan(got[:, 5]).all()
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5)


def test_an_unknown_layout_is_an_error(layout):
    layout[0] = "columns"
    with pytest.raises(ValueError, match="CHAINRULE_JIT_LINEAR='columns'"):
        _linear()(np, _data((4, 3), "float32"), _data((2, 3), "float32"), None)


def test_the_trial_alternates_the_arms_and_keeps_the_faster():
    """_Layout on made-up timings: an untimed first call of each arm, then the arms taking
    turns; the transposed arm is kept only when faster by the margin; a recheck later."""
    lay = cgemm._Layout()
    assert [lay.arm(), lay.arm()] == [-2, -1]  # each arm's first call, untimed
    seen = []
    while lay.pick is None:
        arm = lay.arm()
        seen.append(arm)
        lay.timed(arm, 1.0 if arm == 0 else 0.9)
    assert set(seen) == {0, 1} and all(a != b for a, b in zip(seen, seen[1:]))
    assert min(seen.count(0), seen.count(1)) == cgemm.TRIAL
    assert lay.pick == 1 and lay.note.startswith("transposed (trial 1: direct 1000000 us")
    assert all(lay.arm() == 1 for _ in range(cgemm.RECHECK))
    assert lay.arm() < 0 and lay.pick is None  # the next trial
    while lay.pick is None:
        arm = lay.arm()
        if arm >= 0:
            lay.timed(arm, 1.0 if arm == 0 else 0.99)  # within the margin: direct
    assert lay.pick == 0 and lay.trials == 2 and lay.until == cgemm.RECHECK << 1


def test_the_trial_runs_in_the_step_and_shows_in_explain(layout, monkeypatch):
    """A jitted linear big enough for a trial: after the trial's calls its shape has a pick,
    the results agree whichever arm ran, and explain() names the pick (OpenBLAS's thread
    count held, so that cblas's own trial does not make it two shapes' trials)."""
    layout[0] = "auto"
    monkeypatch.setenv("CHAINRULE_JIT_BLAS", "own")
    m, k, n = 64, 128, 160  # 1.3M multiply-adds: above TRIAL_MACS
    assert m * k * n >= cgemm.TRIAL_MACS
    x, w, b = (cr.tensor(_data((m, k), "float32")), cr.tensor(_data((n, k), "float32", 1)),
               cr.tensor(_data((n,), "float32", 2)))
    f = cr.jit(lambda x, w, b: cr.nn.functional.linear(x, w, b) * 2.0, backend="c")
    outs = [f(x, w, b).numpy() for _ in range(2 * cgemm.TRIAL + 12)]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-5, atol=1e-5)
    key = next(s for s in cgemm.PICKS if s[1:4] == (m, n, k) and s[0] == "float32")
    assert cgemm.PICKS[key].pick in (0, 1)
    text = f.explain()
    assert f"linear ({m}, {k}) x ({n}, {k})^T float32 + bias" in text
    assert "(trial 1: direct" in text


def test_ops_moved_after_a_kernel_keep_their_c_versions(monkeypatch):
    """The MLP's backward: the second layer's ReLU mask kernel reads the gradient, and the
    bias-gradient sum and the products moved after it must still be the C wrappers (the
    sums kept as ops: fuse.FOLD_COLSUMS off; on, the mask kernels make them)."""
    from chainrule.jit import fuse

    monkeypatch.setattr(fuse, "FOLD_COLSUMS", [False])
    def fn(x, w1, b1, w2, b2, w3):
        h1 = cr.nn.functional.relu(cr.nn.functional.linear(x, w1, b1))
        h2 = cr.nn.functional.relu(cr.nn.functional.linear(h1, w2, b2))
        return cr.nn.functional.linear(h2, w3).sum()

    arrays = (_data((64, 40), "float32"), _data((600, 40), "float32", 1),
              _data((600,), "float32", 2), _data((600, 600), "float32", 3),
              _data((600,), "float32", 4), _data((10, 600), "float32", 5))
    want, got, f = _run_both(fn, *arrays)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    prog = f._compiles[-1].entry.program
    ops = [(op.name, getattr(op.fn, "__qualname__", "")) for op in prog.graph.ops
           if op.name in ("sum_to", "linear", "matmul")]
    assert sum(name == "sum_to" for name, _ in ops) == 2, ops
    assert all("wrappers" in q for _, q in ops), ops


def _mlp_grad(x, w1, b1, w2, b2, w3):
    h1 = cr.nn.functional.relu(cr.nn.functional.linear(x, w1, b1))
    h2 = cr.nn.functional.relu(cr.nn.functional.linear(h1, w2, b2))
    return cr.nn.functional.linear(h2, w3).sum()


def _mlp_arrays(dtype="float32"):
    return (_data((64, 40), dtype), _data((600, 40), dtype, 1), _data((600,), dtype, 2),
            _data((600, 600), dtype, 3), _data((600,), dtype, 4), _data((10, 600), dtype, 5))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_relu_mask_is_made_in_its_multiply_kernel(dtype, monkeypatch):
    """fuse.find_kernels: the first layer's ReLU mask ``h1 > 0`` is not written out by the
    second layer's mask kernel (before the product) but made in the kernel that multiplies
    the product's result with it; values and gradients as on the numpy backend."""
    from chainrule.jit import fuse

    def groups(arrays):
        def fn(*ts):
            ts = [t.detach().requires_grad_() for t in ts]
            return cr.autograd.grad(_mlp_grad(*ts), ts[1:2])[0]

        f = cr.jit(fn, backend="numpy")
        for _ in range(2):
            f(*[cr.tensor(a) for a in arrays])
        g = f.graph_ir()
        return g, fuse.find_kernels(g, min_ops=2, min_size=1 << 18)

    arrays = _mlp_arrays(dtype)
    g, found = groups(arrays)
    names = [[g.ops[i].name for i in k.members] for k in found]
    assert ["np.greater", "np.multiply"] in names, names
    # the rule off: the mask joins the earlier kernel and its multiply is left alone
    monkeypatch.setattr(fuse, "_starts_later_group", lambda *a: False)
    g, found = groups(arrays)
    assert ["np.greater", "np.multiply"] not in [[g.ops[i].name for i in k.members]
                                                for k in found]
    monkeypatch.undo()
    want, got, _ = _run_both(_mlp_grad, *arrays)
    tol = 1e-4 if dtype == "float32" else 1e-10
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 10)


def _relu_case(x, w, b, layout):
    """kernel.linear_relu in both arms against the impls of linear then relu (the product,
    then ``+ b``, then ``maximum(., 0)``): the direct arm bitwise (the same product call),
    the transposed arm within rounding (its product may sum a leftover row in another
    kernel), NaN where the impls have NaN in both."""
    lr = _all()["kernel.linear_relu"]
    want = REGISTRY["relu"].impl(np, REGISTRY["linear"].impl(np, x, w, b))
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    for arm in ("direct", "transposed"):
        layout[0] = arm
        before = cgemm.TAKEN["linear_relu"]
        got = lr(x, w, b)
        assert cgemm.TAKEN["linear_relu"] == before + 1
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        if arm == "direct":
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        else:
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_relu_is_the_unfused_ops(dtype, layout):
    for m, k, n in ((1, 1, 1), (7, 3, 5), (33, 65, 31), (64, 40, 72), (2, 600, 33)):
        x, w, b = _data((m, k), dtype, m), _data((n, k), dtype, k), _data((n,), dtype, n)
        _relu_case(x, w, b, layout)
        _relu_case(x, w, None, layout)
    _relu_case(_data((3, 9, 24), dtype), _data((40, 24), dtype, 1), None, layout)  # 3-d
    _relu_case(_data((24, 35), dtype, 3).T, _data((24, 40), dtype, 4).T,
               _data((40,), dtype, 5), layout)  # both transposed
    # NaN, inf and -0 (a zero input row with a -0 bias: the product adds +0 terms to -0)
    x, w, b = _data((40, 9), dtype), _data((37, 9), dtype, 1), _data((37,), dtype, 2)
    x[1, 2], x[3, 0], b[2], w[5, 4] = np.nan, np.inf, -np.inf, np.nan
    x[7] = 0.0
    b[9] = -0.0
    _relu_case(x, w, b, layout)


def test_linear_relu_falls_back_to_the_impls():
    lr = _all()["kernel.linear_relu"]
    before = cgemm.TAKEN["linear_relu"]
    x, w = _data((5, 4), "float32"), _data((3, 4), "float32", 1)
    for args in ((x, w.astype("float64"), None), (x.astype(np.float16), w.astype(np.float16),
                                                  None), (np.zeros((0, 4), "float32"), w, None)):
        got = lr(*args)
        want = REGISTRY["relu"].impl(np, REGISTRY["linear"].impl(np, *args))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert cgemm.TAKEN["linear_relu"] == before


def test_relu_of_a_linear_is_one_call_through_the_jit():
    """cgemm.fuse_linear_relu in backend c's compile: values and gradients as on the numpy
    backend; a product read by something else besides the relu stays two ops."""
    def fn(x, w1, b1, w2):
        y = cr.nn.functional.linear(x, w1, b1)
        h = cr.nn.functional.relu(y)
        kept = cr.nn.functional.linear(h, w2)
        return (cr.nn.functional.relu(kept) + kept).sum()  # kept is read twice

    arrays = (_data((30, 20), "float32"), _data((50, 20), "float32", 1),
              _data((50,), "float32", 2), _data((40, 50), "float32", 3))
    before = cgemm.TAKEN["linear_relu"]
    want, got, f = _run_both(fn, *arrays)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert cgemm.TAKEN["linear_relu"] > before
    names = [op.name for op in f._compiles[-1].entry.program.graph.ops]
    assert names.count("kernel.linear_relu") == 1, names


def test_a_guard_is_checked_before_later_work():
    """find_kernels: a cross-entropy's target check (a guard) is not carried past the
    forward by a kernel grouping it with later ops of its shape (which happened once the
    ReLU no longer split the groups): bad targets fail the guard, as eagerly, instead of
    reaching the gather."""
    def loss(x, w1, w2, t):
        h = cr.nn.functional.relu(cr.nn.functional.linear(x, w1))
        return cr.nn.functional.cross_entropy(cr.nn.functional.linear(h, w2), t)

    x, w1, w2 = _data((16, 12), "float32"), _data((32, 12), "float32", 1), \
        _data((5, 32), "float32", 2)
    f = cr.jit(loss, backend="c")
    good = cr.tensor(np.arange(16) % 5)
    for _ in range(3):
        f(cr.tensor(x), cr.tensor(w1), cr.tensor(w2), good)
    prog = f._compiles[-1].entry.program
    assert "kernel.linear_relu" in [op.name for op in prog.graph.ops]
    run = getattr(prog.run, "run", prog.run)  # (a cblas.Tuned's)
    lines = prog.source.splitlines()
    first = min(i for i, line in enumerate(lines) if "= f" in line and getattr(
        run.__globals__.get(line.split("= ", 1)[1].split("(")[0]), "__name__", "")
        == "linear_relu")
    last_guard = max(i for i, line in enumerate(lines) if "_GuardFailed" in line)
    assert last_guard < first, prog.source
    bad = cr.tensor(np.arange(16) % 5 + 3)  # targets up to 7, for 5 classes
    with pytest.raises(Exception) as eager_err:
        loss(cr.tensor(x), cr.tensor(w1), cr.tensor(w2), bad)
    with pytest.raises(type(eager_err.value)):
        f(cr.tensor(x), cr.tensor(w1), cr.tensor(w2), bad)
