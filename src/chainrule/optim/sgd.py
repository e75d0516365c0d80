"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..primitives import update as P
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), PyTorch's ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``grad`` (lr, momentum ``mu``, dampening ``tau``,
    weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p
        if mu != 0:
            b = g                             on the first step
            b = mu * b + (1 - tau) * g        afterwards
            g = g + mu * b   if nesterov  else  b
        p = p - lr * g

    The last line is one BLAS pass, ``p + (-lr) * g`` rounded once where the BLAS fuses the
    multiply-add (as ``torch.optim.SGD``'s ``add_(g, alpha=-lr)`` does), for contiguous
    float32/float64 NumPy parameters (``chainrule.primitives.update.descend``).

    State: ``momentum_buffer`` (``b``), only when momentum is non-zero.

    Args:
        params: tensors or parameter groups.
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0).
        dampening: dampening of the momentum (default 0).
        weight_decay: L2 penalty added to the gradient (default 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend the objective instead of descending it.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import SGD
        >>> w = chainrule.tensor([1.0, -1.0], requires_grad=True)
        >>> opt = SGD([w], lr=0.1, momentum=0.9)
        >>> for _ in range(2):
        ...     opt.zero_grad()
        ...     (w * w).sum().backward()
        ...     opt.step()
        >>> w
        tensor([ 0.4600, -0.4600], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False):
        _check_hyper("learning rate", lr, opt="SGD")
        _check_hyper("momentum", momentum, opt="SGD")
        _check_hyper("weight_decay", weight_decay, opt="SGD")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening "
                             f"(got momentum={momentum}, dampening={dampening})")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}
        super().__init__(params, defaults)

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad`` (through
        the ``sgd_update`` primitive, which writes ``p`` and the momentum buffer in place)."""
        mu = group["momentum"]
        buf, first = None, False
        if mu != 0:
            b = state.get("momentum_buffer")
            first = b is None
            if first:
                b = state["momentum_buffer"] = _wrap(backend.get_array_module(p).empty_like(grad))
            buf = b
        P.sgd_update(_wrap(p), _wrap(grad), buf, group["lr"], mu, group["dampening"],
                     group["weight_decay"], nesterov=group["nesterov"],
                     maximize=group["maximize"], first=first)
