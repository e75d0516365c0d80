"""Adadelta (Zeiler, 2012)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper, _regularised_grad

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """Adadelta, PyTorch's ``torch.optim.Adadelta``.

    For each parameter ``p`` with gradient ``grad`` (lr, rho, eps, weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p
        v = rho * v + (1 - rho) * g**2
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta**2
        p = p - lr * delta

    State: ``step``, ``square_avg`` (``v``) and ``acc_delta`` (``u``), both starting at zero.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import Adadelta
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = Adadelta([w], lr=1.0)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # the first step is about sqrt(eps / (1 - rho)) * sign(g)
        tensor([ 0.9968, -1.9968], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, *, maximize: bool = False):
        _check_hyper("learning rate", lr, opt="Adadelta")
        _check_hyper("rho", rho, high=1.0, opt="Adadelta")
        _check_hyper("epsilon", eps, opt="Adadelta")
        _check_hyper("weight_decay", weight_decay, opt="Adadelta")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps,
                                  "weight_decay": weight_decay, "maximize": maximize})

    def init_state(self, p, state, group) -> None:
        """A step count of 0 and zero running averages."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["square_avg"] = _wrap(xp.zeros_like(p))
        state["acc_delta"] = _wrap(xp.zeros_like(p))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad``."""
        xp = backend.get_array_module(p)
        rho, eps = group["rho"], group["eps"]
        state["step"] += 1
        g = _regularised_grad(self, p, grad, group["maximize"], group["weight_decay"])
        v, u = state["square_avg"]._data, state["acc_delta"]._data
        v *= rho
        v += (1 - rho) * g * g
        delta = xp.sqrt(u + eps) / xp.sqrt(v + eps) * g
        u *= rho
        u += (1 - rho) * delta * delta
        p -= group["lr"] * delta
