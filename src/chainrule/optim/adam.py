"""Adam and AdamW (Kingma & Ba, 2015; Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import backend
from ..primitives import update as P
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["Adam", "AdamW"]


def check_adam_hypers(name: str, lr, betas, eps, weight_decay) -> None:
    """The hyperparameter checks of the Adam family (Adam, AdamW, NAdam, RAdam)."""
    _check_hyper("learning rate", lr, opt=name)
    _check_hyper("epsilon", eps, opt=name)
    _check_hyper("beta parameter at index 0", betas[0], high=1.0, high_open=True, opt=name)
    _check_hyper("beta parameter at index 1", betas[1], high=1.0, high_open=True, opt=name)
    _check_hyper("weight_decay", weight_decay, opt=name)


class Adam(Optimizer):
    """Adam, PyTorch's ``torch.optim.Adam`` (with its ``amsgrad`` and decoupled-decay options).

    For each parameter ``p`` with gradient ``grad``, at its step ``t = 1, 2, ...`` (lr,
    betas ``(b1, b2)``, weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p                           (decoupled_weight_decay=False)
        p = p * (1 - lr * wd)                    (decoupled_weight_decay=True: AdamW)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        v_max = max(v_max, v)                    (amsgrad: v_max replaces v below)
        p = p - lr / (1 - b1**t) * m / (sqrt(v) / sqrt(1 - b2**t) + eps)

    State: ``step`` (the count ``t``), ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``) and, with
    amsgrad, ``max_exp_avg_sq`` (``v_max``); the buffers start at zero.

    Args:
        params: tensors or parameter groups.
        lr: learning rate (default 1e-3).
        betas: decay rates of the first and second moment (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: weight decay (default 0), an L2 penalty unless decoupled.
        amsgrad: use the running maximum of ``v`` (Reddi et al., 2018).
        maximize: ascend the objective instead of descending it.
        decoupled_weight_decay: shrink the weights directly (AdamW) instead of adding
            ``wd * p`` to the gradient.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import Adam
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = Adam([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # the first Adam step moves each weight by about lr
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    _name = "Adam"

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        check_adam_hypers(self._name, lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def init_state(self, p, state, group) -> None:
        """Zero moments and a step count of 0."""
        xp = backend.get_array_module(p)
        state["step"] = 0
        state["exp_avg"] = _wrap(xp.zeros_like(p))
        state["exp_avg_sq"] = _wrap(xp.zeros_like(p))
        if group.get("amsgrad"):  # NAdam and RAdam share this init and have no amsgrad
            state["max_exp_avg_sq"] = _wrap(xp.zeros_like(p))

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad`` (through
        the ``adam_update`` primitive, which writes ``p`` and the moments in place)."""
        t = state["step"] = state["step"] + 1
        vmax = None
        if group["amsgrad"]:
            vmax = state.get("max_exp_avg_sq")
            if vmax is None:  # amsgrad switched on after the first step
                vmax = state["max_exp_avg_sq"] = _wrap(backend.get_array_module(p).zeros_like(p))
        b1, b2 = group["betas"]
        P.adam_update(_wrap(p), _wrap(grad), state["exp_avg"], state["exp_avg_sq"], vmax,
                      group["lr"], b1, b2, group["eps"], group["weight_decay"], t,
                      decoupled=group["decoupled_weight_decay"], maximize=group["maximize"])


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, PyTorch's ``torch.optim.AdamW``.

    The rule is Adam's (see :class:`Adam`) with ``decoupled_weight_decay=True``: before the
    moment updates the weights shrink, ``p = p * (1 - lr * wd)``, and the gradient is left
    alone. The default weight_decay is 1e-2.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import AdamW
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # shrunk by 1 - 0.1 * 0.5, then the Adam step of size lr
        tensor([ 0.8500, -1.8000], requires_grad=True)
    """

    _name = "AdamW"

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict) -> None:
        """Load like Adam; the decay stays decoupled whatever the saved groups say."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
