"""A training step that clips its gradients (``nn.utils.clip_grad_norm_``) under chainrule.jit:
no graph break (the clip scale is never read on the host) and the state eager execution
leaves, on both backends, whether the clip scales the gradients or not."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn
from chainrule.jit.api import VERIFY_TOL


def _run(jit_backend, max_norm, steps=6):
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = cr.optim.Adam(model.parameters(), lr=1e-2)

    def step(x, y):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        return loss

    if jit_backend is not None:
        step = cr.jit(step, backend=jit_backend, fullgraph=True)
    rng = np.random.default_rng(1)
    losses = [float(step(cr.from_numpy(rng.standard_normal((16, 4), dtype=np.float32)),
                         cr.from_numpy(rng.standard_normal((16, 1), dtype=np.float32))))
              for _ in range(steps)]
    return step, losses, [p.detach().numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # always clips / never clips
def test_clipped_step_replays_as_eager(backend, max_norm):
    if backend == "c":
        pytest.importorskip("cffi")
    _, eager_losses, eager_params = _run(None, max_norm)
    jitted, losses, params = _run(backend, max_norm)
    report = jitted.explain()
    assert "1 compile(s)" in report and "cache hits 4" in report, report
    tol = VERIFY_TOL.get(jitted.backend, dict(rtol=0, atol=0))
    np.testing.assert_allclose(losses, eager_losses, **tol)
    for a, b in zip(params, eager_params):
        np.testing.assert_allclose(a, b, **tol)
