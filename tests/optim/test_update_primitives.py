"""The optimisers step through update primitives (what a trace of a training step sees), with
the hyperparameters as inputs; the primitives write in place and refuse vmap."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule
from chainrule import optim
from chainrule.func import vmap
from chainrule.func.batching import BatchingError
from chainrule.primitives import REGISTRY, core


@pytest.fixture
def seen():
    """The primitive applications made while the fixture is active: (name, inputs, params)."""
    calls = []
    apply = core._APPLY[0]

    def recording(prim, inputs, params):
        calls.append((prim.name, inputs, params))
        return apply(prim, inputs, params)

    core._APPLY[0] = recording
    try:
        yield calls
    finally:
        core._APPLY[0] = apply


@pytest.mark.parametrize("cls,kw,prim", [
    (optim.SGD, {"lr": 0.1, "momentum": 0.9}, "sgd_update"),
    (optim.Adam, {"lr": 0.1}, "adam_update"),
    (optim.AdamW, {"lr": 0.1}, "adam_update"),
    (optim.Adagrad, {"lr": 0.1}, "adagrad_update"),
    (optim.RMSprop, {"lr": 0.1, "momentum": 0.5, "centered": True}, "rmsprop_update"),
])
def test_a_step_is_one_update_primitive_per_parameter_with_the_lr_as_input(seen, cls, kw, prim):
    w = chainrule.tensor([1.0, -2.0], requires_grad=True)
    b = chainrule.tensor(0.5, requires_grad=True)
    opt = cls([w, b], **kw)
    (w * w * b).sum().backward()
    seen.clear()
    opt.step()
    opt.param_groups[0]["lr"] = 0.05  # a schedule: the next step's call carries the new value
    opt.step()
    assert [name for name, _, _ in seen] == [prim] * 4
    assert [inputs[0]._data is p._data for (_, inputs, _), p in zip(seen, [w, b] * 2)] == \
        [True] * 4
    for (_, inputs, params), lr in zip(seen, [0.1, 0.1, 0.05, 0.05]):
        scalars = [x for x in inputs if not isinstance(x, chainrule.Tensor)]
        assert lr in scalars and "lr" not in params


def test_update_primitives_declare_their_in_place_effects():
    for name in ("sgd_update", "adam_update", "adagrad_update", "rmsprop_update"):
        prim = REGISTRY[name]
        assert prim.kind == "update" and prim.inplace and 0 in prim.inplace
        assert not prim.differentiable
    assert all(not p.inplace for p in REGISTRY.values() if p.kind != "update")


def test_update_primitives_refuse_vmap():
    p, g = chainrule.zeros(3, 2), chainrule.ones(3, 2)
    f = lambda p, g: REGISTRY["sgd_update"](p, g, None, 0.1, 0.0, 0.0, 0.0, nesterov=False,
                                            maximize=False, first=False)
    with pytest.raises(BatchingError, match="sgd_update writes its inputs in place"):
        vmap(f)(p, g)
    np.testing.assert_array_equal(np.asarray(p), 0.0)


def test_a_subclass_writing_arrays_directly_matches_the_primitive():
    """Optimisers without an update primitive (written on raw arrays, with the base's scratch
    buffers, _regularised_grad and the update's descend) give SGD's values bit for bit."""
    from chainrule.optim.optimizer import Optimizer, _regularised_grad
    from chainrule.primitives.update import descend

    class RawSGD(Optimizer):
        def __init__(self, params, lr, weight_decay, maximize):
            super().__init__(params, {"lr": lr, "weight_decay": weight_decay,
                                      "maximize": maximize})

        def update(self, p, grad, state, group):
            g = _regularised_grad(self, p, grad, group["maximize"], group["weight_decay"])
            descend(np, p, g, group["lr"])

    ws = []
    for cls in (RawSGD, optim.SGD):
        w = chainrule.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
        opt = cls([w], lr=0.1, weight_decay=0.01, maximize=True)
        for _ in range(3):
            opt.zero_grad()
            (w * w * w).sum().backward()
            opt.step()
        ws.append(np.asarray(w.detach()))
    np.testing.assert_array_equal(ws[0], ws[1])
