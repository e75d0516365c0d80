"""``custom_vjp``: JAX's way of giving a function its own reverse-mode rule.

``f = custom_vjp(fn)`` then ``f.defvjp(fwd, bwd)``: ``fwd(*args) -> (out, residuals)``
computes the output and whatever the backward needs; ``bwd(residuals, g) -> tuple`` returns
one cotangent per argument (a pytree matching it; None for arguments that get none).
Arguments and outputs may be pytrees of tensors. ``fwd`` runs with gradient recording on, so
residuals stay differentiable functions of the inputs (higher-order derivatives go through
``fwd`` and ``bwd``, as in JAX). Built on the same machinery as
:class:`chainrule.autograd.Function`, so it works with ``backward``, ``autograd.grad``,
every reverse transform, grad-of-grad (when ``bwd`` is written with chainrule ops) and vmap.
It has no forward-mode rule: ``jvp`` through it raises.

Example:
    >>> import chainrule
    >>> from chainrule.func import custom_vjp, grad
    >>> @custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> def fwd(x):
    ...     return x, None
    >>> def bwd(res, g):
    ...     return (g.clamp(-1.0, 1.0),)
    >>> clip_gradient.defvjp(fwd, bwd)
    >>> grad(lambda x: (clip_gradient(x) * 10).sum())(chainrule.ones(2))
    tensor([1., 1.])
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..autograd import forward as fwd
from ..autograd.function import run_custom
from ..autograd.grad_mode import STATE
from ..autograd.graph import FORWARD
from ..tensor import Tensor
from .pytree import tree_flatten, tree_unflatten

__all__ = ["custom_vjp"]


class custom_vjp:  # noqa: N801 - JAX's name
    """Wrap ``fun`` so that its reverse-mode derivative is given by :meth:`defvjp`.

    Args:
        fun: the function (its outputs are tensors or pytrees of tensors).
        nondiff_argnums: positions of arguments that are not differentiated (any Python
            objects); they are passed to ``bwd`` first, as in JAX.

    Example:
        >>> import chainrule
        >>> from chainrule.func import custom_vjp, grad
        >>> f = custom_vjp(lambda x: x.sin())
        >>> f.defvjp(lambda x: (x.sin(), x.cos()), lambda cos_x, g: (g * cos_x,))
        >>> float(grad(lambda x: f(x).sum())(chainrule.zeros(1)))
        1.0
    """

    def __init__(self, fun: Callable, nondiff_argnums: tuple = ()):
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd = None
        self.bwd = None
        functools.update_wrapper(self, fun)

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set the forward ``fwd(*args) -> (out, residuals)`` and backward
        ``bwd(*nondiff_args, residuals, g) -> tuple of cotangents``.

        Example:
            >>> from chainrule.func import custom_vjp
            >>> f = custom_vjp(lambda x: x)
            >>> f.defvjp(lambda x: (x, None), lambda r, g: (g,))
        """
        if not callable(fwd) or not callable(bwd):
            raise TypeError("custom_vjp.defvjp: fwd and bwd must be callables")
        self.fwd = fwd
        self.bwd = bwd

    def __call__(self, *args):
        name = getattr(self.fun, "__name__", "custom_vjp")
        if self.fwd is None:
            raise TypeError(f"custom_vjp function {name!r} is called before defvjp(fwd, bwd)")
        nondiff = set(self.nondiff_argnums)
        for i in nondiff:
            if not -len(args) <= i < len(args):
                raise ValueError(f"{name}: nondiff_argnums {i} is out of range for "
                                 f"{len(args)} arguments")
        nondiff = {i % len(args) for i in nondiff}
        diff_pos = [i for i in range(len(args)) if i not in nondiff]
        leaves_per_arg = []
        specs = []
        flat = []
        for i in diff_pos:
            leaves, spec = tree_flatten(args[i])
            leaves_per_arg.append(len(leaves))
            specs.append(spec)
            flat.extend(leaves)
        needs = STATE.enabled and any(isinstance(x, Tensor) and x._rg for x in flat)
        if not needs and not FORWARD.levels:
            return self.fun(*args)
        out_spec = []

        def rebuild(xs):
            a = list(args)
            k = 0
            for i, n, spec in zip(diff_pos, leaves_per_arg, specs):
                a[i] = tree_unflatten(spec, xs[k:k + n])
                k += n
            return a

        def forward(ctx):
            res = self.fwd(*rebuild(flat))
            if not isinstance(res, tuple) or len(res) != 2:
                raise TypeError(f"{name}: fwd must return a pair (output, residuals), got "
                                f"{type(res).__name__}")
            out, ctx.residuals = res
            leaves, spec = tree_flatten(out)
            out_spec.append(spec)
            for j, o in enumerate(leaves):
                if not isinstance(o, Tensor):
                    raise TypeError(f"{name}: output leaf {j} is a {type(o).__name__}; "
                                    "custom_vjp outputs must be tensors")
            return tuple(leaves)

        def backward(ctx, *grads):
            g = tree_unflatten(out_spec[0], list(grads))
            static = [args[i] for i in sorted(nondiff)]
            cts = self.bwd(*static, ctx.residuals, g)
            if not isinstance(cts, (tuple, list)) or len(cts) != len(diff_pos):
                raise TypeError(f"{name}: bwd must return a tuple with one cotangent per "
                                f"differentiable argument ({len(diff_pos)}), got "
                                f"{type(cts).__name__}"
                                + (f" of length {len(cts)}" if isinstance(cts, (tuple, list))
                                   else ""))
            res = []
            for ct, n, spec in zip(cts, leaves_per_arg, specs):
                if ct is None:
                    res.extend([None] * n)
                    continue
                leaves, s = tree_flatten(ct)
                if s != spec:
                    raise ValueError(f"{name}: bwd returned a cotangent of structure {s!r} for "
                                     f"an argument of structure {spec!r}")
                res.extend(leaves)
            return tuple(res)

        for lv in fwd.STACK[:FORWARD.levels]:
            if lv.kind == fwd.JVP and any(isinstance(x, Tensor) and
                                          fwd.payload(x, lv.id) is not None for x in flat):
                raise RuntimeError(f"{name}: a custom_vjp function has no forward-mode rule, "
                                   "so jvp/jacfwd/hessian cannot go through it; use "
                                   "chainrule.autograd.Function with a jvp static method")
        outs = run_custom(name, flat, forward, backward, None, record_forward=True)
        return tree_unflatten(out_spec[0], list(outs))
