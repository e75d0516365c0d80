"""Reductions: sum, mean, var, std, prod, max/min (with indices), amax/amin, argmax/argmin,
logsumexp, softmax, log_softmax, cumsum, norm, all, any.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor([[1.0, 5.0], [3.0, 2.0]])
    >>> chainrule.max(x, dim=1)
    torch_return_types.max(values=tensor([5., 3.]), indices=tensor([1, 0]))
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import backend
from ..primitives import reduce as P
from ..tensor import Tensor
from ._amp import autocast_fp32
from ._util import cast, float32_inside, method, normalize_dim, normalize_dims
from .elementwise import _t, abs, exp, log, maximum, minimum, sqrt, where


def _float_input(x: Tensor, op: str) -> Tensor:
    if x._data.dtype.kind not in "fV":
        raise TypeError(f"{op}(): input dtype must be floating point, got {x.dtype.name} "
                        f"(use .float() first)")
    return x


@method
def sum(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Sum over ``dim`` (int, tuple, or None for all). Integers and bools sum as int64.

    Example:
        >>> import chainrule
        >>> chainrule.sum(chainrule.ones(2, 3), dim=1)
        tensor([3., 3.])
    """
    x = _t(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif (x._data.dtype.kind in "bi" and x._data.dtype.itemsize < 8) or x._data.dtype.kind == "b":
        x = cast(x, backend.int64)
    axes = normalize_dims(dim, x._data.ndim, "sum")
    return P.sum_p(x, axes=axes, keepdims=keepdim)


def _count(x: Tensor, axes) -> int:
    if axes is None:
        return x._data.size
    n = 1
    for a in axes:
        n *= x._data.shape[a]
    return n


@method
@float32_inside
def mean(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Mean over ``dim`` (floating-point inputs).

    Example:
        >>> import chainrule
        >>> chainrule.mean(chainrule.tensor([1.0, 2.0, 6.0]))
        tensor(3.)
    """
    x = _t(input)
    if dtype is not None:
        x = cast(x, dtype)
    _float_input(x, "mean")
    axes = normalize_dims(dim, x._data.ndim, "mean")
    n = _count(x, axes)
    return P.sum_p(x, axes=axes, keepdims=keepdim) * (1.0 / n if n else math.nan)


@method
@float32_inside
def var(input, dim=None, *, correction=1, keepdim: bool = False, unbiased=None) -> Tensor:
    """Variance with Bessel's ``correction`` (1: sample variance, 0: population).

    Example:
        >>> import chainrule
        >>> chainrule.var(chainrule.tensor([1.0, 2.0, 3.0, 4.0]))
        tensor(1.6667)
    """
    x = _float_input(_t(input), "var")
    if unbiased is not None:
        correction = 1 if unbiased else 0
    axes = normalize_dims(dim, x._data.ndim, "var")
    n = _count(x, axes)
    mu = P.sum_p(x, axes=axes, keepdims=True) * (1.0 / n) if n else P.sum_p(x, axes=axes,
                                                                         keepdims=True)
    d = x - mu
    denom = n - correction
    s = P.sum_p(d * d, axes=axes, keepdims=keepdim)
    return s * (1.0 / denom) if denom > 0 else s * math.nan


@method
@float32_inside
def std(input, dim=None, *, correction=1, keepdim: bool = False, unbiased=None) -> Tensor:
    """Standard deviation (sqrt of :func:`var`).

    Example:
        >>> import chainrule
        >>> chainrule.std(chainrule.tensor([1.0, 3.0]))
        tensor(1.4142)
    """
    return _root_at_zero(var(input, dim, correction=correction, keepdim=keepdim,
                             unbiased=unbiased), 2)


def _root_at_zero(s: Tensor, p) -> Tensor:
    """``s ** (1 / p)`` whose gradient is 0 (not NaN) where ``s == 0``: PyTorch's convention
    for std of a constant and the norm of a zero vector."""
    zero = s == 0
    safe = where(zero, 1.0, s)
    return where(zero, 0.0, sqrt(safe) if p == 2 else safe ** (1.0 / p))


@float32_inside
def var_mean(input, dim=None, *, correction=1, keepdim=False):
    """(var, mean) in one call.

    Example:
        >>> import chainrule
        >>> v, m = chainrule.var_mean(chainrule.tensor([1.0, 3.0])); float(m)
        2.0
    """
    return var(input, dim, correction=correction, keepdim=keepdim), mean(input, dim, keepdim)


@method
@autocast_fp32
def prod(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product over ``dim`` (an int or None); correct gradients with zeros present.

    Example:
        >>> import chainrule
        >>> chainrule.prod(chainrule.tensor([2.0, 3.0, 4.0]))
        tensor(24.)
    """
    x = _t(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif (x._data.dtype.kind in "bi" and x._data.dtype.itemsize < 8) or x._data.dtype.kind == "b":
        x = cast(x, backend.int64)
    axes = normalize_dims(dim, x._data.ndim, "prod")
    return P.prod(x, axes=axes, keepdims=keepdim)


@method
def amax(input, dim=None, keepdim: bool = False) -> Tensor:
    """Maximum over ``dim`` (int, tuple or None); ties share the gradient evenly.

    Example:
        >>> import chainrule
        >>> chainrule.amax(chainrule.tensor([[1, 4], [3, 2]]), dim=0)
        tensor([3, 4])
    """
    x = _t(input)
    _nonempty(x, dim, "amax")
    return P.amax(x, axes=normalize_dims(dim, x._data.ndim, "amax"), keepdims=keepdim)


@method
def amin(input, dim=None, keepdim: bool = False) -> Tensor:
    """Minimum over ``dim``; ties share the gradient evenly.

    Example:
        >>> import chainrule
        >>> chainrule.amin(chainrule.tensor([[1, 4], [3, 2]]), dim=1)
        tensor([1, 2])
    """
    x = _t(input)
    _nonempty(x, dim, "amin")
    return P.amin(x, axes=normalize_dims(dim, x._data.ndim, "amin"), keepdims=keepdim)


def _nonempty(x, dim, op):
    if x._data.size == 0:
        raise ValueError(f"{op}(): cannot reduce an empty tensor of shape {tuple(x.shape)}")


class ValuesIndices(NamedTuple):
    """(values, indices), as returned by max/min with a dim."""

    values: Tensor
    indices: Tensor


class _MaxMin(ValuesIndices):
    def __repr__(self):
        return (f"torch_return_types.{self._op}(values={self.values!r}, "
                f"indices={self.indices!r})")


class _Max(_MaxMin):
    _op = "max"


class _Min(_MaxMin):
    _op = "min"


@method
def max(input, dim=None, keepdim: bool = False):
    """``max(x)``: the largest element; ``max(x, dim)``: (values, indices) along dim;
    ``max(x, other_tensor)``: elementwise maximum.

    Example:
        >>> import chainrule
        >>> v, i = chainrule.max(chainrule.tensor([[1.0, 5.0]]), dim=1); i
        tensor([1])
    """
    if isinstance(dim, Tensor):
        return maximum(input, dim)
    x = _t(input)
    if dim is None:
        return amax(x)
    d = normalize_dim(dim, x._data.ndim, "max")
    return _Max(*_values_at_index(x, d, keepdim, argmax))


@method
def min(input, dim=None, keepdim: bool = False):
    """Like :func:`max`, for the smallest element.

    Example:
        >>> import chainrule
        >>> chainrule.min(chainrule.tensor([3.0, 1.0])).item()
        1.0
    """
    if isinstance(dim, Tensor):
        return minimum(input, dim)
    x = _t(input)
    if dim is None:
        return amin(x)
    d = normalize_dim(dim, x._data.ndim, "min")
    return _Min(*_values_at_index(x, d, keepdim, argmin))


def _values_at_index(x, d, keepdim, argfn):
    """(values, indices) with values gathered at the indices, so that (as in PyTorch) the
    gradient flows to the returned index only, even where there are ties."""
    if x._data.ndim == 0:
        return x * 1 if x._data.dtype.kind in "fV" else x, argfn(x, d, keepdim)
    from .shape import gather, squeeze  # noqa: PLC0415

    idx = argfn(x, d, True)
    values = gather(x, d, idx)
    return (values if keepdim else squeeze(values, d)), (idx if keepdim else squeeze(idx, d))


@method
def argmax(input, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (flattened when dim is None).

    Example:
        >>> import chainrule
        >>> chainrule.argmax(chainrule.tensor([1.0, 7.0, 3.0]))
        tensor(1)
    """
    x = _t(input)
    _nonempty(x, dim, "argmax")
    if dim is None:
        return P.argmax(x, axis=None, keepdims=False)
    return P.argmax(x, axis=normalize_dim(dim, x._data.ndim, "argmax"), keepdims=keepdim)


@method
def argmin(input, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element.

    Example:
        >>> import chainrule
        >>> chainrule.argmin(chainrule.tensor([4.0, 1.0]))
        tensor(1)
    """
    x = _t(input)
    _nonempty(x, dim, "argmin")
    if dim is None:
        return P.argmin(x, axis=None, keepdims=False)
    return P.argmin(x, axis=normalize_dim(dim, x._data.ndim, "argmin"), keepdims=keepdim)


@method
@float32_inside
def logsumexp(input, dim, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) computed stably (the max is subtracted first).

    Example:
        >>> import chainrule
        >>> chainrule.logsumexp(chainrule.tensor([1000.0, 1000.0]), dim=0)
        tensor(1000.6932)
    """
    x = _float_input(_t(input), "logsumexp")
    axes = normalize_dims(dim, x._data.ndim, "logsumexp")
    m = P.amax(x.detach(), axes=axes, keepdims=True)
    m = where(m.isfinite(), m, 0.0)
    s = log(P.sum_p(exp(x - m), axes=axes, keepdims=True)) + m
    if not keepdim:
        from .shape import reshape  # noqa: PLC0415

        s = reshape(s, P.sum_p(x.detach(), axes=axes, keepdims=False).shape)
    return s


@method
def softmax(input, dim: int = -1, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, computed stably.

    Example:
        >>> import chainrule
        >>> chainrule.softmax(chainrule.tensor([0.0, 0.0]), dim=0)
        tensor([0.5000, 0.5000])
    """
    x = _t(input)
    if dtype is not None:
        x = cast(x, dtype)
    _float_input(x, "softmax")
    axis = normalize_dim(dim, x._data.ndim, "softmax")
    if x._data.ndim == 0:  # as a 1-element vector: the rules reduce along an axis
        from .shape import reshape  # noqa: PLC0415

        return reshape(P.softmax(reshape(x, (1,)), axis=0), ())
    return P.softmax(x, axis=axis)


@method
def log_softmax(input, dim: int = -1, dtype=None) -> Tensor:
    """x - logsumexp(x) along ``dim``, computed stably.

    Example:
        >>> import chainrule
        >>> chainrule.log_softmax(chainrule.tensor([0.0, 0.0]), dim=0)
        tensor([-0.6931, -0.6931])
    """
    x = _t(input)
    if dtype is not None:
        x = cast(x, dtype)
    _float_input(x, "log_softmax")
    axis = normalize_dim(dim, x._data.ndim, "log_softmax")
    if x._data.ndim == 0:  # as a 1-element vector: the rules reduce along an axis
        from .shape import reshape  # noqa: PLC0415

        return reshape(P.log_softmax(reshape(x, (1,)), axis=0), ())
    return P.log_softmax(x, axis=axis)


@method
def cumsum(input, dim: int, *, dtype=None) -> Tensor:
    """Running sum along ``dim``.

    Example:
        >>> import chainrule
        >>> chainrule.cumsum(chainrule.tensor([1, 2, 3]), dim=0)
        tensor([1, 3, 6])
    """
    x = _t(input)
    if dtype is not None:
        x = cast(x, dtype)
    elif (x._data.dtype.kind in "bi" and x._data.dtype.itemsize < 8) or x._data.dtype.kind == "b":
        x = cast(x, backend.int64)
    if x._data.ndim == 0:
        from .shape import reshape  # noqa: PLC0415

        normalize_dim(dim, 0, "cumsum")
        return reshape(P.cumsum(reshape(x, (1,)), axis=0), ())
    return P.cumsum(x, axis=normalize_dim(dim, x._data.ndim, "cumsum"))


@method
@float32_inside
def norm(input, p="fro", dim=None, keepdim: bool = False) -> Tensor:
    """Vector p-norm over ``dim`` (all elements by default): p = 2/'fro', 1, inf, -inf,
    or any positive number. At a zero vector the gradient is 0, as in PyTorch.

    Example:
        >>> import chainrule
        >>> chainrule.norm(chainrule.tensor([3.0, 4.0]))
        tensor(5.)
    """
    x = _float_input(_t(input), "norm")
    axes = normalize_dims(dim, x._data.ndim, "norm")
    if p in ("fro", 2, 2.0):
        return _root_at_zero(P.sum_p(x * x, axes=axes, keepdims=keepdim), 2)
    if p == math.inf:
        return P.amax(abs(x), axes=axes, keepdims=keepdim)
    if p == -math.inf:
        return P.amin(abs(x), axes=axes, keepdims=keepdim)
    if p == 1:
        return P.sum_p(abs(x), axes=axes, keepdims=keepdim)
    if isinstance(p, (int, float)) and p > 0:
        return _root_at_zero(P.sum_p(abs(x) ** p, axes=axes, keepdims=keepdim), p)
    raise ValueError(f"norm: unsupported p={p!r} (use 'fro', a positive number, inf or -inf)")


@method
def all(input, dim=None, keepdim: bool = False) -> Tensor:
    """True where every element (along dim) is non-zero.

    Example:
        >>> import chainrule
        >>> chainrule.all(chainrule.tensor([True, False]))
        tensor(False)
    """
    x = _t(input)
    if x._data.dtype.kind != "b":
        x = x != 0
    if x._data.size == 0:
        return P.sum_p(x, axes=normalize_dims(dim, x._data.ndim, "all"), keepdims=keepdim) == 0
    return P.amin(x, axes=normalize_dims(dim, x._data.ndim, "all"), keepdims=keepdim)


@method
def any(input, dim=None, keepdim: bool = False) -> Tensor:
    """True where some element (along dim) is non-zero.

    Example:
        >>> import chainrule
        >>> chainrule.any(chainrule.tensor([0, 2]))
        tensor(True)
    """
    x = _t(input)
    if x._data.dtype.kind != "b":
        x = x != 0
    if x._data.size == 0:
        return P.sum_p(x, axes=normalize_dims(dim, x._data.ndim, "any"), keepdims=keepdim) != 0
    return P.amax(x, axes=normalize_dims(dim, x._data.ndim, "any"), keepdims=keepdim)
