"""Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2015, section 7)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper, _regularised_grad

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """Adamax, PyTorch's ``torch.optim.Adamax``.

    For each parameter ``p`` with gradient ``grad``, at its step ``t = 1, 2, ...`` (lr, betas
    ``(b1, b2)``, eps, weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        u = max(b2 * u, |g| + eps)
        p = p - lr / (1 - b1**t) * m / u

    State: ``step``, ``exp_avg`` (``m``) and ``exp_inf`` (``u``), both starting at zero.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import Adamax
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = Adamax([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # the first step is lr * sign(g)
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, *, maximize: bool = False):
        _check_hyper("learning rate", lr, opt="Adamax")
        _check_hyper("epsilon", eps, opt="Adamax")
        _check_hyper("beta parameter at index 0", betas[0], high=1.0, high_open=True,
                     opt="Adamax")
        _check_hyper("beta parameter at index 1", betas[1], high=1.0, high_open=True,
                     opt="Adamax")
        _check_hyper("weight_decay", weight_decay, opt="Adamax")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "maximize": maximize})

    def init_state(self, p, state, group) -> None:
        """A step count of 0 and zero moments."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["exp_avg"] = _wrap(xp.zeros_like(p))
        state["exp_inf"] = _wrap(xp.zeros_like(p))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad``."""
        xp = backend.get_array_module(p)
        b1, b2 = group["betas"]
        t = state["step"] = state["step"] + 1
        g = _regularised_grad(self, p, grad, group["maximize"], group["weight_decay"])
        m, u = state["exp_avg"]._data, state["exp_inf"]._data
        m += (1 - b1) * (g - m)
        u *= b2
        xp.maximum(u, xp.abs(g) + group["eps"], out=u)
        p -= group["lr"] / (1 - b1**t) * m / u
