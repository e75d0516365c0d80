"""Public helpers to check derivatives: :func:`gradcheck` and :func:`gradgradcheck`.

Both compare the engine's answer with central finite differences along random directions
(in float64): for a function f, random input directions u and a random output cotangent v,

* reverse mode: ``<v, (f(x + eps u) - f(x - eps u)) / 2 eps>`` must equal ``<J^T v, u>``;
* forward mode (when ``check_forward``): ``J u`` from :func:`chainrule.func.jvp` must equal
  the finite difference, and ``<v, J u>`` must equal ``<J^T v, u>`` to rounding.

Example:
    >>> import chainrule
    >>> from chainrule.testing import gradcheck, gradgradcheck
    >>> x = chainrule.randn(3, dtype=chainrule.float64, requires_grad=True)
    >>> gradcheck(lambda x: (x.sin() * x).sum(), (x,))
    True
    >>> gradgradcheck(lambda x: x.tanh(), (x,))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..autograd.engine import grad as _grad
from ..tensor import Tensor, _wrap

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(AssertionError):
    """A derivative disagreed with finite differences."""


def _outputs(out) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    return [o for o in out if isinstance(o, Tensor)]


def _diff_inputs(inputs) -> list[int]:
    idx = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not idx:
        raise ValueError("gradcheck: no input requires grad")
    for i in idx:
        if inputs[i]._data.dtype != np.float64:
            raise ValueError(f"gradcheck: input {i} is {inputs[i].dtype.name}; use float64 "
                             "inputs (finite differences in lower precision are meaningless)")
    return idx


def _eval(fn, inputs, idx, shifts, scale):
    xs = list(inputs)
    for i, u in zip(idx, shifts):
        xs[i] = _wrap(inputs[i]._data + scale * u).requires_grad_()
    return [o._data.astype(np.float64) for o in _outputs(fn(*xs))]


def gradcheck(fn: Callable, inputs: Sequence, *, eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-4, n_directions: int = 2, seed: int = 0,
              check_forward: bool = False) -> bool:
    """Check ``fn``'s first derivatives at ``inputs`` (float64 tensors requiring grad).

    Args:
        fn: maps the inputs to a tensor or a tuple of tensors.
        inputs: tensors (and other arguments passed through unchanged).
        eps: finite-difference step; atol/rtol: tolerance on each directional derivative.
        n_directions: random directions tried.
        check_forward: also check forward mode (``chainrule.func.jvp``).

    Returns True, or raises :class:`GradcheckError` naming the input and the two numbers.

    Example:
        >>> import chainrule
        >>> from chainrule.testing import gradcheck
        >>> a = chainrule.randn(2, 3, dtype=chainrule.float64, requires_grad=True)
        >>> b = chainrule.randn(3, dtype=chainrule.float64, requires_grad=True)
        >>> gradcheck(lambda a, b: a @ b, (a, b))
        True
    """
    inputs = tuple(inputs)
    idx = _diff_inputs(inputs)
    rng = np.random.default_rng(seed)
    outs = _outputs(fn(*inputs))
    for k in range(n_directions):
        us = [rng.standard_normal(inputs[i].shape) for i in idx]
        vs = [rng.standard_normal(o.shape) for o in outs]
        plus = _eval(fn, inputs, idx, us, eps)
        minus = _eval(fn, inputs, idx, us, -eps)
        num = sum(float(np.sum(v * (p - m) / (2 * eps))) for v, p, m in zip(vs, plus, minus))
        # reverse: J^T v, dotted with u
        outs = _outputs(fn(*inputs))
        pairs = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
        # outputs that do not require grad do not depend on the inputs: derivative 0
        grads = _grad([o for o, _ in pairs],
                      [inputs[i] for i in idx],
                      grad_outputs=[_wrap(v.astype(o._data.dtype)) for o, v in pairs],
                      allow_unused=True) if pairs else []
        ana = sum(float(np.sum(g._data * u)) for g, u in zip(grads, us) if g is not None)
        if not np.isclose(ana, num, atol=atol, rtol=rtol):
            raise GradcheckError(
                f"gradcheck: reverse-mode derivative along random direction {k} is {ana!r}, "
                f"finite differences give {num!r} (difference {ana - num:.3g}); inputs "
                f"{[tuple(inputs[i].shape) for i in idx]}")
        if check_forward:
            from ..func import jvp  # noqa: PLC0415

            prim = tuple(inputs[i] for i in idx)

            def f_sub(*xs):
                full = list(inputs)
                for i, x in zip(idx, xs):
                    full[i] = x
                r = fn(*full)
                return tuple(_outputs(r))

            _, tangents = jvp(f_sub, prim, tuple(_wrap(u) for u in us))
            fwd = sum(float(np.sum(v * t._data)) for v, t in zip(vs, tangents)
                      if t is not None)
            if not np.isclose(fwd, num, atol=atol, rtol=rtol):
                raise GradcheckError(
                    f"gradcheck: forward-mode derivative along direction {k} is {fwd!r}, finite "
                    f"differences give {num!r}")
            if not np.isclose(fwd, ana, atol=1e-10, rtol=1e-8):
                raise GradcheckError(
                    f"gradcheck: <v, J u> = {fwd!r} (forward) but <J^T v, u> = {ana!r} (reverse)")
    return True


def gradgradcheck(fn: Callable, inputs: Sequence, *, eps: float = 1e-6, atol: float = 1e-5,
                  rtol: float = 1e-4, n_directions: int = 2, seed: int = 1,
                  check_forward: bool = False) -> bool:
    """Check second derivatives: gradcheck of ``x -> J(x)^T v`` for a fixed random v,
    computed with ``create_graph=True`` (so the backward pass itself is differentiated).

    Example:
        >>> import chainrule
        >>> from chainrule.testing import gradgradcheck
        >>> x = chainrule.randn(4, dtype=chainrule.float64, requires_grad=True)
        >>> gradgradcheck(lambda x: (x ** 3).sum(), (x,))
        True
    """
    inputs = tuple(inputs)
    idx = _diff_inputs(inputs)
    rng = np.random.default_rng(seed)
    outs = _outputs(fn(*inputs))
    vs = [_wrap(rng.standard_normal(o.shape)) for o in outs]

    def vjp_fn(*xs):
        outs = _outputs(fn(*xs))
        pairs = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
        gs = _grad([o for o, _ in pairs], [xs[i] for i in idx],
                   grad_outputs=[v for _, v in pairs], create_graph=True, allow_unused=True)
        # a None or constant gradient means the second derivative is zero there; gradcheck
        # then checks that finite differences agree (they must be ~0)
        return tuple(g if g is not None else _wrap(np.zeros(xs[i].shape))
                     for g, i in zip(gs, idx))

    return gradcheck(vjp_fn, inputs, eps=eps, atol=atol, rtol=rtol, n_directions=n_directions,
                     seed=seed, check_forward=check_forward)
