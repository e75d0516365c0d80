"""Backend c's update loops (``cupdate``) on OpenMP's threads and on one: bitwise the impls
either way, whatever ``cupdate.PARALLEL`` says (its thresholds are read at each call)."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.jit import cbackend, cupdate, kcache, render_c
from chainrule.primitives.update import _adam, _sgd

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend c unavailable: {cbackend.unavailable()}")


def _loops():
    decl, src = cupdate.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return cupdate.wrappers(mod.lib, mod.ffi)


# never parallel, parallel from one element, the shipped thresholds
SETTINGS = [[0, 0], [1, 1], [cupdate.PARALLEL_SGD, cupdate.PARALLEL_ADAM]]


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_updates_bitwise_the_impls_at_every_parallel_threshold(setting, dtype, monkeypatch):
    monkeypatch.setattr(cupdate, "PARALLEL", list(setting))
    loops = _loops()
    rng = np.random.default_rng(7)
    n = 3 * cupdate.PARALLEL_SGD + 5  # above both shipped thresholds, not a multiple of a vector
    p, g, b = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    p[:3] = [np.nan, -0.0, np.inf]
    want = [p.copy(), g.copy(), b.copy()]
    _sgd(np, *want, 0.05, 0.9, 0.1, 1e-3, nesterov=True, maximize=False, first=False)
    loops["sgd_update"](np, p, g, b, 0.05, 0.9, 0.1, 1e-3, nesterov=True, maximize=False,
                        first=False)
    for a, w in zip((p, g, b), want):
        assert a.tobytes() == w.tobytes()

    p, g, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    v, vmax = (np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(2))
    args = (3e-3, 0.9, 0.999, 1e-8, 0.01, 4)
    want = [a.copy() for a in (p, g, m, v, vmax)]
    _adam(np, *want, *args, decoupled=True, maximize=False)
    loops["adam_update"](np, p, g, m, v, vmax, *args, decoupled=True, maximize=False)
    for i, (a, w) in enumerate(zip((p, g, m, v, vmax), want)):
        assert a.tobytes() == w.tobytes(), f"array {i}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("via_blas", [False, True])
def test_plain_sgd_through_the_impls_blas_or_the_loop_is_the_same_bits(via_blas, dtype,
                                                                      monkeypatch):
    """``cupdate.SGD_BLAS`` routes large plain SGD updates to the impl's ``?axpy``: the same
    bits as the loop (which rounds ``p + (-lr) * g`` as the impl's BLAS does), odd sizes
    around the threshold, and the impl's own result either way."""
    monkeypatch.setattr(cupdate, "SGD_BLAS", [via_blas])
    loops = _loops()
    rng = np.random.default_rng(11)
    for n in (cupdate.PARALLEL_SGD - 1, cupdate.PARALLEL_SGD, 3 * cupdate.PARALLEL_SGD + 5):
        p, g = (rng.standard_normal(n).astype(dtype) for _ in range(2))
        want = p.copy()
        _sgd(np, want, g, None, 0.0123, 0, 0, 0, nesterov=False, maximize=False, first=False)
        loops["sgd_update"](np, p, g, None, 0.0123, 0, 0, 0, nesterov=False, maximize=False,
                            first=False)
        assert p.tobytes() == want.tobytes()


# ---------------------------------------------------------------- one call for a step's SGD
def _many():
    decl, src = cupdate.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return cupdate.wrappers(mod.lib, mod.ffi)["kernel.sgd_many"]


@pytest.mark.parametrize("wd, maximize", [(0, False), (1e-3, False), (0, True)])
def test_sgd_many_is_bitwise_the_single_updates(wd, maximize):
    """Several parameters (both float dtypes, odd sizes, one above the parallel threshold,
    a non-contiguous gradient the loop leaves to the impl) in one call: each bitwise as the
    impl updates it alone."""
    sgd_many = _many()
    rng = np.random.default_rng(3)
    sizes = [(7,), (33, 5), (cupdate.PARALLEL_SGD + 3,), (2, 9)]
    dts = ["float32", "float64", "float32", "float64"]
    ps = [rng.standard_normal(s).astype(d) for s, d in zip(sizes, dts)]
    gs = [rng.standard_normal(s).astype(d) for s, d in zip(sizes, dts)]
    ps[0][:3] = [np.nan, -0.0, np.inf]
    gs[3] = np.asfortranarray(gs[3])
    want = [p.copy() for p in ps]
    for p, g in zip(want, gs):
        _sgd(np, p, g, None, 0.05, 0, 0, wd, nesterov=False, maximize=maximize, first=False)
    out = sgd_many(tuple(ps), tuple(gs), 0.05, 0, 0, wd, False, maximize, False)
    assert all(a is b for a, b in zip(out, ps))
    for i, (a, w) in enumerate(zip(ps, want)):
        assert a.tobytes() == w.tobytes(), f"parameter {i}"


def test_an_sgd_step_is_one_call_and_the_same_bits_as_one_call_each(monkeypatch):
    """A model's SGD step (weight decay) on backend c: one ``kernel.sgd_many`` call, the
    parameters after 4 steps bitwise those of one update call per parameter
    (``cupdate.GROUP_SGD`` off), and close to the numpy backend's."""
    import chainrule as cr

    def make():
        rng = np.random.default_rng(4)
        model = cr.nn.Sequential(cr.nn.Linear(6, 40), cr.nn.ReLU(), cr.nn.Linear(40, 3))
        for p in model.parameters():
            p.data = cr.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32))
        opt = cr.optim.SGD(model.parameters(), lr=0.05, weight_decay=1e-3)
        x = cr.tensor(rng.standard_normal((8, 6)).astype(np.float32))
        y = cr.tensor(rng.integers(0, 3, 8))

        def step():
            opt.zero_grad()
            loss = cr.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return model, step

    runs = {}
    for backend, group in (("c", True), ("c-each", False), ("numpy", True)):
        monkeypatch.setattr(cupdate, "GROUP_SGD", [group])
        model, step = make()
        f = cr.jit(step, backend="numpy" if backend == "numpy" else "c")
        for _ in range(4):
            f()
        runs[backend] = ([p.detach().numpy().copy() for p in model.parameters()], f)
    names = [op.name for op in runs["c"][1]._program(-1).graph.ops]
    assert names.count("kernel.sgd_many") == 1 and "sgd_update" not in names, names
    names = [op.name for op in runs["c-each"][1]._program(-1).graph.ops]
    assert names.count("sgd_update") == 4, names
    for a, b, c in zip(runs["c"][0], runs["c-each"][0], runs["numpy"][0]):
        assert a.tobytes() == b.tobytes()
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
