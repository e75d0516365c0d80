"""Gradient clipping: ``clip_grad_norm_``, ``clip_grad_value_`` and their parts
``get_total_norm`` / ``clip_grads_with_norm_``.

They work on the raw gradient arrays, in place, and record nothing for autograd.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> w = chainrule.ones(4, requires_grad=True)
    >>> (w * 3.0).sum().backward()
    >>> nn.utils.clip_grad_norm_([w], max_norm=1.0)
    tensor(6.)
    >>> round(float(w.grad.norm()), 4)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ... import backend
from ...backend.fperrors import quiet_begin, quiet_end
from ...tensor import Tensor, _wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]


def _tensor_list(tensors, op: str) -> list[Tensor]:
    if isinstance(tensors, Tensor):
        return [tensors]
    if not isinstance(tensors, Iterable):
        raise TypeError(f"{op}: expected a Tensor or an iterable of Tensors, got "
                        f"{type(tensors).__name__}")
    out = list(tensors)
    for t in out:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got an element of type {type(t).__name__}")
    return out


def _grads(parameters, op: str) -> list[Tensor]:
    return [p._grad for p in _tensor_list(parameters, op) if p._grad is not None]


def _norm(xp, a, p: float):
    """The p-norm of an array's elements, as a 0-d array of its dtype."""
    if p == 2.0:
        flat = a.reshape(-1)
        return xp.sqrt(xp.dot(flat, flat))
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    if p == math.inf:
        return xp.abs(a).max()
    if p == -math.inf:
        return xp.abs(a).min()
    if p == 0.0:
        return xp.asarray(xp.count_nonzero(a), dtype=a.dtype)
    if p == 1.0:
        return xp.abs(a).sum()
    return (xp.abs(a) ** p).sum() ** (1.0 / p)


def get_total_norm(tensors: Tensor | Iterable[Tensor], norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """The ``norm_type``-norm of all the given tensors' elements together (the norm of
    their individual norms), as a 0-d tensor. ``foreach`` is accepted for PyTorch
    compatibility and has no effect.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.utils.get_total_norm([chainrule.tensor([3.0]), chainrule.tensor([4.0])])
        tensor(5.)
    """
    ts = _tensor_list(tensors, "get_total_norm")
    p = float(norm_type)
    if not ts:
        return _wrap(np.zeros((), dtype=backend.default_float().np))
    first = ts[0]._data
    xp = backend.get_array_module(first)
    dev = backend.device_of(first)
    dtype = np.result_type(*[t._data.dtype for t in ts])
    quiet = quiet_begin()  # an overflowing norm is inf, silently, as in PyTorch
    try:
        norms = [_norm(xp, backend.to_device(t._data, dev), p) for t in ts]
        if len(norms) > 1:
            total = _norm(xp, xp.stack(norms).astype(dtype, copy=False), p)
        else:
            total = norms[0].astype(dtype, copy=False)
    finally:
        quiet_end(quiet)
    total = xp.asarray(total)  # a 0-d array, not a NumPy scalar
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {p} for gradients from `parameters` is "
                           "non-finite, so it cannot be clipped. To disable this error and "
                           "scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")
    return _wrap(total)


def _scale_in_place(g: Tensor, coef) -> None:
    a = g._data
    coef = coef.astype(a.dtype, copy=False)  # the product is computed in the gradient's dtype
    if getattr(a.flags, "writeable", True):
        a *= coef
    else:
        g._data = a * coef
    g._bump()


def clip_grads_with_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                          total_norm: Tensor, foreach: bool | None = None) -> None:
    """Scale the gradients in place by ``min(1, max_norm / (total_norm + 1e-6))``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = chainrule.ones(1, requires_grad=True); w.sum().backward()
        >>> nn.utils.clip_grads_with_norm_([w], 0.5, chainrule.tensor(1.0)); w.grad
        tensor([0.5000])
    """
    grads = _grads(parameters, "clip_grads_with_norm_")
    if not grads:
        return
    total = total_norm._data if isinstance(total_norm, Tensor) else np.asarray(total_norm)
    xp = backend.get_array_module(total)
    # in the total norm's dtype, as PyTorch computes it. A 0-d array, never read on the host:
    # there is no "coef == 1: skip" shortcut, so that a step under chainrule.jit can clip
    # (a host read would be a graph break); multiplying by one changes no gradient
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        _scale_in_place(g, coef)


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    """Rescale the gradients of ``parameters`` in place so that their total
    ``norm_type``-norm is at most ``max_norm``: each is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``. Returns the total norm before clipping (a
    0-d tensor). ``error_if_nonfinite=True`` raises instead of scaling by a nan/inf norm.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> m = nn.Linear(3, 1)
        >>> m(chainrule.ones(2, 3) * 100).sum().backward()
        >>> total = nn.utils.clip_grad_norm_(m.parameters(), max_norm=1.0)
        >>> bool(total > 1), round(float(nn.utils.get_total_norm([p.grad for p in
        ...                                                       m.parameters()])), 4)
        (True, 1.0)
    """
    parameters = _tensor_list(parameters, "clip_grad_norm_")
    grads = [p._grad for p in parameters if p._grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float,
                     foreach: bool | None = None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = chainrule.ones(2, requires_grad=True)
        >>> (w * chainrule.tensor([5.0, -0.1])).sum().backward()
        >>> nn.utils.clip_grad_value_(w, 1.0); w.grad
        tensor([ 1.0000, -0.1000])
    """
    v = float(clip_value)
    for g in _grads(parameters, "clip_grad_value_"):
        a = g._data
        xp = backend.get_array_module(a)
        if getattr(a.flags, "writeable", True):
            xp.clip(a, -v, v, out=a)
        else:
            g._data = xp.clip(a, -v, v)
        g._bump()
