"""ASGD, averaged stochastic gradient descent (Polyak & Juditsky, 1992)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper, _regularised_grad

__all__ = ["ASGD"]


class ASGD(Optimizer):
    """ASGD, PyTorch's ``torch.optim.ASGD``.

    For each parameter ``p`` with gradient ``grad``, at its step ``t = 1, 2, ...`` (lr, lambd,
    alpha, t0, weight_decay ``wd``; ``eta`` starts at lr and ``mu`` at 1)::

        g = -grad if maximize else grad
        g = g + wd * p
        p = p * (1 - lambd * eta) - eta * g
        ax = p if mu == 1 else ax + mu * (p - ax)      (the running average)
        eta = lr / (1 + lambd * lr * t)**alpha
        mu = 1 / max(1, t - t0)

    State: ``step``, ``eta``, ``mu`` (floats) and ``ax`` (the averaged parameters; use them
    for evaluation, as in PyTorch).

    Example:
        >>> import chainrule
        >>> from chainrule.optim import ASGD
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = ASGD([w], lr=0.1, lambd=0.0)
        >>> (w * w).sum().backward(); opt.step()
        >>> w
        tensor([ 0.8000, -1.6000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, lambd: float = 1e-4,
                 alpha: float = 0.75, t0: float = 1e6, weight_decay: float = 0, *,
                 maximize: bool = False):
        _check_hyper("learning rate", lr, opt="ASGD")
        _check_hyper("lambd", lambd, opt="ASGD")
        _check_hyper("alpha", alpha, opt="ASGD")
        _check_hyper("t0", t0, opt="ASGD")
        _check_hyper("weight_decay", weight_decay, opt="ASGD")
        super().__init__(params, {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0,
                                  "weight_decay": weight_decay, "maximize": maximize})

    def init_state(self, p, state, group) -> None:
        """Step 0, eta = lr, mu = 1 and a zero average."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["eta"] = float(group["lr"])
        state["mu"] = 1.0
        state["ax"] = _wrap(xp.zeros_like(p))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad``."""
        xp = backend.get_array_module(p)
        lr, lambd = group["lr"], group["lambd"]
        t = state["step"] = state["step"] + 1
        g = _regularised_grad(self, p, grad, group["maximize"], group["weight_decay"])
        eta = state["eta"]
        p *= 1 - lambd * eta
        p -= eta * g
        ax = state["ax"]._data
        if state["mu"] != 1:
            ax += state["mu"] * (p - ax)
        else:
            xp.copyto(ax, p)
        state["eta"] = lr / (1 + lambd * lr * t) ** group["alpha"]
        state["mu"] = 1 / max(1, t - group["t0"])
