"""Rprop, resilient backpropagation (Riedmiller & Braun, 1993), and SparseAdam's refusal."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["Rprop", "SparseAdam"]


class Rprop(Optimizer):
    """Rprop, PyTorch's ``torch.optim.Rprop`` (without weight backtracking, as PyTorch).

    For each parameter ``p`` with gradient ``grad`` (lr, etas ``(eta_minus, eta_plus)``,
    step_sizes ``(s_min, s_max)``; ``prev`` starts at 0 and the step ``s`` at lr)::

        g = -grad if maximize else grad
        f = eta_plus where g * prev > 0, eta_minus where < 0, 1 where == 0
        s = clip(s * f, s_min, s_max)
        g = 0 where f == eta_minus       (skip the step after a sign change)
        p = p - sign(g) * s
        prev = g

    State: ``step``, ``prev`` and ``step_size`` (``s``).

    Example:
        >>> import chainrule
        >>> from chainrule.optim import Rprop
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = Rprop([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step()
        >>> w
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    def __init__(self, params: Iterable, lr: float = 1e-2,
                 etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50), *, maximize: bool = False):
        _check_hyper("learning rate", lr, opt="Rprop")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Rprop: invalid etas {tuple(etas)}; expected 0 < eta_minus < 1 "
                             "< eta_plus")
        super().__init__(params, {"lr": lr, "etas": tuple(etas),
                                  "step_sizes": tuple(step_sizes), "maximize": maximize})

    def init_state(self, p, state, group) -> None:
        """Step 0, a zero previous gradient and step sizes of lr."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["prev"] = _wrap(xp.zeros_like(p))
        state["step_size"] = _wrap(xp.full_like(p, group["lr"]))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad``."""
        xp = backend.get_array_module(p)
        eta_minus, eta_plus = group["etas"]
        s_min, s_max = group["step_sizes"]
        state["step"] += 1
        g = -grad if group["maximize"] else grad.copy()
        prev, s = state["prev"]._data, state["step_size"]._data
        d = xp.sign(g * prev)
        f = xp.where(d > 0, eta_plus, xp.where(d < 0, eta_minus, 1.0)).astype(p.dtype)
        s *= f
        xp.clip(s, s_min, s_max, out=s)
        g[d < 0] = 0
        p -= xp.sign(g) * s
        xp.copyto(prev, g)


class SparseAdam:
    """PyTorch's SparseAdam updates only the rows that a sparse gradient touches. chainrule's
    gradients are dense (``nn.Embedding(sparse=True)`` is not supported), so this name raises
    and points to ``optim.Adam``, whose update on dense gradients also moves untouched rows'
    moments.

    Example:
        >>> import chainrule
        >>> chainrule.optim.SparseAdam([chainrule.zeros(1, requires_grad=True)])
        Traceback (most recent call last):
        ...
        NotImplementedError: optim.SparseAdam needs sparse gradients, ...
    """

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            "optim.SparseAdam needs sparse gradients, which chainrule does not produce (its "
            "gradients are dense); use optim.Adam or optim.AdamW instead")
