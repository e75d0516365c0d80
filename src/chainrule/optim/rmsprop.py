"""RMSprop (Hinton's lecture 6e; the centred form of Graves, 2013)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..primitives import update as P
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, PyTorch's ``torch.optim.RMSprop``.

    For each parameter ``p`` with gradient ``grad`` (lr, smoothing ``alpha``, momentum ``mu``,
    weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p
        v = alpha * v + (1 - alpha) * g**2
        a = alpha * a + (1 - alpha) * g                  (centered)
        s = sqrt(v - a**2) + eps   if centered   else   sqrt(v) + eps
        b = mu * b + g / s,  p = p - lr * b              (mu > 0)
        p = p - lr * g / s                               (mu = 0)

    State: ``step``, ``square_avg`` (``v``), ``momentum_buffer`` (``b``, when mu > 0) and
    ``grad_avg`` (``a``, when centered), all starting at zero.

    Args:
        params: tensors or parameter groups.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant (default 0.99).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty added to the gradient (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by an estimate of the gradient's variance instead of its second
            moment.
        maximize: ascend the objective instead of descending it.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import RMSprop
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = RMSprop([w], lr=0.01)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # the first step is lr / sqrt(1 - alpha) = 0.1 per weight
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, *, maximize: bool = False):
        _check_hyper("learning rate", lr, opt="RMSprop")
        _check_hyper("epsilon", eps, opt="RMSprop")
        _check_hyper("momentum", momentum, opt="RMSprop")
        _check_hyper("weight_decay", weight_decay, opt="RMSprop")
        _check_hyper("alpha", alpha, opt="RMSprop")
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered, "maximize": maximize}
        super().__init__(params, defaults)

    def init_state(self, p, state, group) -> None:
        """Zero averages (and buffers for momentum / centering) and a step count of 0."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["square_avg"] = _wrap(xp.zeros_like(p))
        if group["momentum"] > 0:
            state["momentum_buffer"] = _wrap(xp.zeros_like(p))
        if group["centered"]:
            state["grad_avg"] = _wrap(xp.zeros_like(p))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad`` (through
        the ``rmsprop_update`` primitive, which writes ``p`` and its buffers in place)."""
        xp = backend.get_array_module(p)
        state["step"] += 1
        avg = buf = None
        if group["centered"]:
            if "grad_avg" not in state:  # centered switched on after the first step
                state["grad_avg"] = _wrap(xp.zeros_like(p))
            avg = state["grad_avg"]
        if group["momentum"] > 0:
            if "momentum_buffer" not in state:  # momentum switched on after the first step
                state["momentum_buffer"] = _wrap(xp.zeros_like(p))
            buf = state["momentum_buffer"]
        P.rmsprop_update(_wrap(p), _wrap(grad), state["square_avg"], avg, buf, group["lr"],
                         group["alpha"], group["eps"], group["weight_decay"],
                         group["momentum"], maximize=group["maximize"])
