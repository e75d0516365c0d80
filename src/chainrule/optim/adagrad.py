"""Adagrad (Duchi, Hazan & Singer, 2011)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..primitives import update as P
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad, PyTorch's ``torch.optim.Adagrad``.

    For each parameter ``p`` with gradient ``grad``, at its step ``t = 1, 2, ...`` (lr,
    lr_decay ``d``, weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p
        lr_t = lr / (1 + (t - 1) * d)
        s = s + g**2
        p = p - lr_t * g / (sqrt(s) + eps)

    State: ``step`` and ``sum`` (``s``), which starts at ``initial_accumulator_value``. As in
    PyTorch, the state is created when the optimiser is built (so ``state_dict`` has it at once).

    Args:
        params: tensors or parameter groups.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay (default 0).
        weight_decay: L2 penalty added to the gradient (default 0).
        initial_accumulator_value: starting value of ``s`` (default 0).
        eps: added to the denominator (default 1e-10).
        maximize: ascend the objective instead of descending it.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import Adagrad
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = Adagrad([w], lr=0.5)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # the first step is lr * sign(g)
        tensor([ 0.5000, -1.5000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, *, maximize: bool = False):
        _check_hyper("learning rate", lr, opt="Adagrad")
        _check_hyper("lr_decay", lr_decay, opt="Adagrad")
        _check_hyper("weight_decay", weight_decay, opt="Adagrad")
        _check_hyper("initial_accumulator_value", initial_accumulator_value, opt="Adagrad")
        _check_hyper("epsilon", eps, opt="Adagrad")
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "maximize": maximize}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.init_state(p._data, self.state[p], group)

    def init_state(self, p, state, group) -> None:
        """A step count of 0 and ``sum`` filled with initial_accumulator_value."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["sum"] = _wrap(xp.full_like(p, group["initial_accumulator_value"]))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad`` (through
        the ``adagrad_update`` primitive, which writes ``p`` and the sum in place)."""
        t = state["step"] = state["step"] + 1
        P.adagrad_update(_wrap(p), _wrap(grad), state["sum"], group["lr"], group["lr_decay"],
                         group["weight_decay"], group["eps"], t, maximize=group["maximize"])
