"""Fused-arithmetic and pointwise composites with PyTorch names: addmm, baddbmm, addcmul,
addcdiv, lerp, reciprocal, log10, exp2, sinh, cosh, hypot, logit, fmod,
clamp_min, clamp_max, nan_to_num, isclose, diff.

Each is a few existing ops, so gradients (of every order) come for free.

Example:
    >>> import chainrule
    >>> chainrule.lerp(chainrule.zeros(2), chainrule.ones(2), 0.25)
    tensor([0.2500, 0.2500])
"""

from __future__ import annotations

import math

from ..tensor import Tensor
from ._amp import autocast_lower
from ._util import float32_inside, method
from .elementwise import (
    _t,
    abs,
    clamp,
    exp,
    isinf,
    isnan,
    log,
    sqrt,
    trunc,
    where,
)
from .linalg import bmm, mm
from .shape import cat, getitem


def _scaled(x, s):
    return x if s == 1 else x * s


@method
@autocast_lower
def addmm(input, mat1, mat2, *, beta=1, alpha=1) -> Tensor:
    """``beta * input + alpha * (mat1 @ mat2)``.

    Example:
        >>> import chainrule
        >>> chainrule.addmm(chainrule.ones(2), chainrule.eye(2), chainrule.eye(2), alpha=2)
        tensor([[3., 1.],
                [1., 3.]])
    """
    return _scaled(_t(input), beta) + _scaled(mm(mat1, mat2), alpha)


@method
@autocast_lower
def baddbmm(input, batch1, batch2, *, beta=1, alpha=1) -> Tensor:
    """``beta * input + alpha * (batch1 @ batch2)`` for batches of matrices.

    Example:
        >>> import chainrule
        >>> chainrule.baddbmm(chainrule.zeros(1, 2, 2), chainrule.ones(1, 2, 3),
        ...                   chainrule.ones(1, 3, 2)).sum()
        tensor(12.)
    """
    return _scaled(_t(input), beta) + _scaled(bmm(batch1, batch2), alpha)


@method
@float32_inside
def addcmul(input, tensor1, tensor2, *, value=1) -> Tensor:
    """``input + value * tensor1 * tensor2``.

    Example:
        >>> import chainrule
        >>> chainrule.addcmul(chainrule.ones(1), chainrule.tensor([2.0]), chainrule.tensor([3.0]))
        tensor([7.])
    """
    return _t(input) + _scaled(_t(tensor1) * tensor2, value)


@method
@float32_inside
def addcdiv(input, tensor1, tensor2, *, value=1) -> Tensor:
    """``input + value * tensor1 / tensor2``.

    Example:
        >>> import chainrule
        >>> chainrule.addcdiv(chainrule.ones(1), chainrule.tensor([3.0]), chainrule.tensor([2.0]))
        tensor([2.5000])
    """
    return _t(input) + _scaled(_t(tensor1) / tensor2, value)


@method
@float32_inside
def lerp(input, end, weight) -> Tensor:
    """``input + weight * (end - input)`` (weight a number or a tensor).

    Example:
        >>> import chainrule
        >>> chainrule.lerp(chainrule.tensor([1.0]), chainrule.tensor([3.0]), 0.5)
        tensor([2.])
    """
    x = _t(input)
    return x + weight * (end - x)


@method
def reciprocal(input) -> Tensor:
    """``1 / input`` (float result, as PyTorch).

    Example:
        >>> import chainrule
        >>> chainrule.reciprocal(chainrule.tensor([2.0, 4.0]))
        tensor([0.5000, 0.2500])
    """
    return 1.0 / _t(input)


@method
@float32_inside
def log10(input) -> Tensor:
    """Base-10 logarithm.

    Example:
        >>> import chainrule
        >>> chainrule.log10(chainrule.tensor([100.0]))
        tensor([2.])
    """
    return log(input) * (1.0 / math.log(10.0))


@method
@float32_inside
def exp2(input) -> Tensor:
    """``2 ** input``.

    Example:
        >>> import chainrule
        >>> chainrule.exp2(chainrule.tensor([3.0]))
        tensor([8.])
    """
    return exp(_t(input) * math.log(2.0))


@method
@float32_inside
def sinh(input) -> Tensor:
    """Hyperbolic sine, ``(e^x - e^-x) / 2``.

    Example:
        >>> import chainrule
        >>> chainrule.sinh(chainrule.tensor([0.0]))
        tensor([0.])
    """
    x = _t(input)
    return (exp(x) - exp(-x)) * 0.5


@method
@float32_inside
def cosh(input) -> Tensor:
    """Hyperbolic cosine, ``(e^x + e^-x) / 2``.

    Example:
        >>> import chainrule
        >>> chainrule.cosh(chainrule.tensor([0.0]))
        tensor([1.])
    """
    x = _t(input)
    return (exp(x) + exp(-x)) * 0.5


@method
@float32_inside
def hypot(input, other) -> Tensor:
    """``sqrt(input**2 + other**2)``.

    Example:
        >>> import chainrule
        >>> chainrule.hypot(chainrule.tensor([3.0]), chainrule.tensor([4.0]))
        tensor([5.])
    """
    x = _t(input)
    return sqrt(x * x + other * other)


@method
@float32_inside
def logit(input, eps=None) -> Tensor:
    """``log(p / (1 - p))``, with p clamped to [eps, 1 - eps] when eps is given.

    Example:
        >>> import chainrule
        >>> chainrule.logit(chainrule.tensor([0.5]))
        tensor([0.])
    """
    p = _t(input)
    if eps is not None:
        p = clamp(p, eps, 1.0 - eps)
    return log(p / (1.0 - p))


def _is_float(v) -> bool:
    return isinstance(v, float) or (isinstance(v, Tensor) and v.dtype.is_floating_point)


@method
@float32_inside
def fmod(input, other) -> Tensor:
    """C's remainder: ``input - trunc(input / other) * other`` (the sign of ``input``; see
    ``remainder`` for Python's).

    Example:
        >>> import chainrule
        >>> chainrule.fmod(chainrule.tensor([-3.0, 3.0]), 2.0)
        tensor([-1.,  1.])
    """
    x = _t(input)
    if not _is_float(x) and not _is_float(other):  # integers: no gradient, C's fmod
        from .. import backend  # noqa: PLC0415
        from ..tensor import _wrap  # noqa: PLC0415

        o = other._data if isinstance(other, Tensor) else other
        return _wrap(backend.get_array_module(x._data).fmod(x._data, o))
    return x - trunc(x / other) * other


@method
def clamp_min(input, min) -> Tensor:
    """``clamp(input, min=min)``.

    Example:
        >>> import chainrule
        >>> chainrule.clamp_min(chainrule.tensor([-1.0, 2.0]), 0.0)
        tensor([0., 2.])
    """
    return clamp(input, min=min)


@method
def clamp_max(input, max) -> Tensor:
    """``clamp(input, max=max)``.

    Example:
        >>> import chainrule
        >>> chainrule.clamp_max(chainrule.tensor([-1.0, 2.0]), 0.0)
        tensor([-1.,  0.])
    """
    return clamp(input, max=max)


@method
def nan_to_num(input, nan: float = 0.0, posinf=None, neginf=None) -> Tensor:
    """NaN, +inf and -inf replaced (by 0 and the dtype's largest/smallest finite values by
    default); the gradient passes where the input is finite.

    Example:
        >>> import chainrule
        >>> chainrule.nan_to_num(chainrule.tensor([float("nan"), 1.0, float("inf")]), posinf=9.0)
        tensor([0., 1., 9.])
    """
    x = _t(input)
    if not x.dtype.is_floating_point:
        return x
    from ..backend import np  # noqa: PLC0415

    info = np.finfo(x._data.dtype)
    hi = float(info.max) if posinf is None else posinf
    lo = float(info.min) if neginf is None else neginf
    x = where(isnan(x), nan, x)
    x = where(isinf(x) & (x > 0), hi, x)
    return where(isinf(x), lo, x)


@method
def isclose(input, other, rtol: float = 1e-5, atol: float = 1e-8,
            equal_nan: bool = False) -> Tensor:
    """Elementwise ``|input - other| <= atol + rtol * |other|`` (bool tensor).

    Example:
        >>> import chainrule
        >>> chainrule.isclose(chainrule.tensor([1.0, 2.0]), chainrule.tensor([1.0, 2.1]))
        tensor([ True, False])
    """
    a = _t(input)
    b = other if isinstance(other, Tensor) else _t(other)
    close = (a == b) | (abs(a - b) <= atol + rtol * abs(b))
    if equal_nan:
        close = close | (isnan(a) & isnan(b))
    return close


@method
def diff(input, n: int = 1, dim: int = -1, prepend=None, append=None) -> Tensor:
    """``n``-th forward difference along ``dim`` (``prepend``/``append`` joined first).

    Example:
        >>> import chainrule
        >>> chainrule.diff(chainrule.tensor([1, 4, 9, 16]))
        tensor([3, 5, 7])
    """
    x = _t(input)
    if prepend is not None or append is not None:
        parts = [p for p in (prepend, x, append) if p is not None]
        x = cat([_t(p) for p in parts], dim)
    from ._util import normalize_dim  # noqa: PLC0415

    d = normalize_dim(dim, x._data.ndim, "diff")
    for _ in range(n):
        lead = (slice(None),) * d
        hi, lo = getitem(x, lead + (slice(1, None),)), getitem(x, lead + (slice(0, -1),))
        x = (hi != lo) if x._data.dtype.kind == "b" else hi - lo
    return x
