"""NAdam (Dozat, 2016) and RAdam (Liu et al., 2020): Adam with Nesterov momentum, and Adam
with a rectified adaptive step."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .. import backend
from .adam import Adam, check_adam_hypers
from .optimizer import Optimizer, _check_hyper, _regularised_grad

__all__ = ["NAdam", "RAdam"]


class _AdamFamily(Optimizer):
    """Shared hyperparameter checks, moment state (Adam's) and weight decay of NAdam and
    RAdam."""

    _name = ""

    def __init__(self, params, defaults):
        check_adam_hypers(self._name, defaults["lr"], defaults["betas"], defaults["eps"],
                          defaults["weight_decay"])
        defaults["betas"] = tuple(defaults["betas"])
        super().__init__(params, defaults)

    init_state = Adam.init_state

    def _moments(self, p, grad, state, group):
        """Weight decay (decoupled or L2), then the two moment updates; returns (t, m, v)."""
        b1, b2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        t = state["step"] = state["step"] + 1
        if wd != 0 and group["decoupled_weight_decay"]:
            p *= 1 - lr * wd
            wd = 0
        g = _regularised_grad(self, p, grad, group["maximize"], wd)
        m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
        m += (1 - b1) * (g - m)
        v *= b2
        v += (1 - b2) * g * g
        return t, g, m, v


class NAdam(_AdamFamily):
    """NAdam, PyTorch's ``torch.optim.NAdam``.

    For each parameter ``p`` with gradient ``grad``, at its step ``t = 1, 2, ...`` (lr, betas
    ``(b1, b2)``, eps, weight_decay ``wd``, momentum_decay ``psi``)::

        g = -grad if maximize else grad
        g = g + wd * p                 (p = p * (1 - lr * wd) when decoupled_weight_decay)
        mu_t = b1 * (1 - 0.5 * 0.96**(t * psi)),  mu_{t+1} likewise
        P = P * mu_t                   (the running product, starting at 1)
        m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g**2
        d = sqrt(v / (1 - b2**t)) + eps
        p = p - lr * (1 - mu_t) / (1 - P) * g / d - lr * mu_{t+1} / (1 - P * mu_{t+1}) * m / d

    State: ``step``, ``mu_product`` (``P``, a float), ``exp_avg`` and ``exp_avg_sq``.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import NAdam
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = NAdam([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # a Nesterov-corrected first step, a little longer than lr
        tensor([ 0.8944, -1.8944], requires_grad=True)
    """

    _name = "NAdam"

    def __init__(self, params: Iterable, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, *,
                 decoupled_weight_decay: bool = False, maximize: bool = False):
        _check_hyper("momentum_decay", momentum_decay, opt="NAdam")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay,
                                  "momentum_decay": momentum_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "maximize": maximize})

    def init_state(self, p, state, group) -> None:
        """Adam's state plus a momentum product of 1."""
        super().init_state(p, state, group)
        state["mu_product"] = 1.0

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad``."""
        xp = backend.get_array_module(p)
        b1, b2 = group["betas"]
        lr, psi = group["lr"], group["momentum_decay"]
        t, g, m, v = self._moments(p, grad, state, group)
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = state["mu_product"] = state["mu_product"] * mu
        denom = xp.sqrt(v / (1 - b2**t)) + group["eps"]
        p -= lr * (1 - mu) / (1 - prod) * g / denom
        p -= lr * mu_next / (1 - prod * mu_next) * m / denom


class RAdam(_AdamFamily):
    """RAdam, PyTorch's ``torch.optim.RAdam``.

    For each parameter ``p`` with gradient ``grad``, at its step ``t = 1, 2, ...`` (lr, betas
    ``(b1, b2)``, eps, weight_decay ``wd``)::

        g = -grad if maximize else grad
        g = g + wd * p                 (p = p * (1 - lr * wd) when decoupled_weight_decay)
        m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g**2
        rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 t b2**t / (1 - b2**t)
        if rho_t > 5:
            r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            p = p - lr * m / (1 - b1**t) * r * sqrt(1 - b2**t) / (sqrt(v) + eps)
        else:
            p = p - lr * m / (1 - b1**t)

    State: ``step``, ``exp_avg`` and ``exp_avg_sq``.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import RAdam
        >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = RAdam([w], lr=0.1)
        >>> (w * w).sum().backward(); opt.step()
        >>> w  # the first steps are SGD with momentum
        tensor([ 0.8000, -1.6000], requires_grad=True)
    """

    _name = "RAdam"

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, *, decoupled_weight_decay: bool = False,
                 maximize: bool = False):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay,
                                  "maximize": maximize})

    def update(self, p, grad, state, group) -> None:
        """Apply the rule in the class docstring to the raw arrays ``p`` and ``grad``."""
        xp = backend.get_array_module(p)
        b1, b2 = group["betas"]
        lr = group["lr"]
        t, _, m, v = self._moments(p, grad, state, group)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * b2**t / bc2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p -= m / bc1 * lr * (math.sqrt(bc2) / (xp.sqrt(v) + group["eps"])) * rect
        else:
            p -= m / bc1 * lr
