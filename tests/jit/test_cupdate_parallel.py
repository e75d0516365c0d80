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
