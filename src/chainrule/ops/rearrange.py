"""Rearranging composites: roll, narrow, diag, diagonal, diag_embed, trace, movedim, tile.

Each is built from slicing, concatenation, permutation, ``where`` and ``pad``, so gradients
(of every order) come from those primitives.

Example:
    >>> import chainrule
    >>> chainrule.roll(chainrule.tensor([1, 2, 3]), 1)
    tensor([3, 1, 2])
"""

from __future__ import annotations

import numbers

from .. import backend
from ..errors import ShapeError
from ..tensor import Tensor, _wrap
from ._amp import autocast_fp32
from ._util import method, normalize_dim
from .elementwise import _t, where
from .reduce import sum as _sum
from .shape import cat, getitem, pad, permute, repeat, reshape, unsqueeze


def _ints(v, op: str, what: str) -> tuple:
    v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
    for s in v:
        if not isinstance(s, numbers.Integral) and not (isinstance(s, Tensor) and s.numel() == 1):
            raise TypeError(f"{op}: {what} must be ints, got {s!r}")
    return tuple(int(s) for s in v)


@method
def roll(input, shifts, dims=None) -> Tensor:
    """Shift entries along ``dims`` by ``shifts``, wrapping around (the flattened tensor when
    ``dims`` is None).

    Example:
        >>> import chainrule
        >>> chainrule.roll(chainrule.arange(6).reshape(2, 3), shifts=(1, -1), dims=(0, 1))
        tensor([[4, 5, 3],
                [1, 2, 0]])
    """
    x = _t(input)
    shifts = _ints(shifts, "roll", "shifts")
    if dims is None:
        if len(shifts) != 1:
            raise ValueError(f"roll: with dims=None, shifts must be one int, got {shifts}")
        return reshape(roll(reshape(x, (-1,)), shifts, 0), x.shape)
    dims = _ints(dims, "roll", "dims")
    if len(dims) != len(shifts):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    for s, d in zip(shifts, dims):
        d = normalize_dim(d, x._data.ndim, "roll")
        n = x._data.shape[d]
        s = s % n if n else 0
        if s:
            lead = (slice(None),) * d
            x = cat([getitem(x, lead + (slice(n - s, None),)),
                     getitem(x, lead + (slice(0, n - s),))], d)
    return x


@method
def narrow(input, dim: int, start, length: int) -> Tensor:
    """``length`` entries of ``dim`` from ``start`` (negative counts from the end).

    Example:
        >>> import chainrule
        >>> chainrule.narrow(chainrule.arange(5), 0, 1, 3)
        tensor([1, 2, 3])
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "narrow")
    n = x._data.shape[d]
    start, length = int(start), int(length)
    if start < 0:
        start += n
    if not 0 <= start <= n or length < 0 or start + length > n:
        raise IndexError(f"narrow: start {start} and length {length} are out of range for "
                         f"dimension {dim} of size {n} (shape {tuple(x.shape)})")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


@method
def diagonal(input, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the (dim1, dim2) planes, as a new last dimension; ``offset > 0`` is
    above the main diagonal.

    Example:
        >>> import chainrule
        >>> chainrule.diagonal(chainrule.arange(9).reshape(3, 3), 1)
        tensor([1, 5])
    """
    x = _t(input)
    nd = x._data.ndim
    if nd < 2:
        raise ShapeError(f"diagonal: input must have at least 2 dimensions, got shape "
                         f"{tuple(x.shape)}")
    a, b = normalize_dim(dim1, nd, "diagonal"), normalize_dim(dim2, nd, "diagonal")
    if a == b:
        raise ValueError(f"diagonal: dim1 and dim2 must differ, both are {a}")
    rest = [i for i in range(nd) if i not in (a, b)]
    x = permute(x, (*rest, a, b))
    r, c = x._data.shape[-2:]
    k = int(offset)
    m = max(0, min(r, c - k) if k >= 0 else min(r + k, c))
    xp = backend.get_array_module(x._data)
    rows, cols = xp.arange(m) + max(-k, 0), xp.arange(m) + max(k, 0)
    return getitem(x, (Ellipsis, _wrap(rows), _wrap(cols)))


_diagonal = diagonal  # diag's argument is called ``diagonal`` too


@method
def diag_embed(input, offset: int = 0) -> Tensor:
    """Square matrices with the last dimension of ``input`` on their ``offset`` diagonal.

    Example:
        >>> import chainrule
        >>> chainrule.diag_embed(chainrule.tensor([1, 2]), 1)
        tensor([[0, 1, 0],
                [0, 0, 2],
                [0, 0, 0]])
    """
    x = _t(input)
    if x._data.ndim < 1:
        raise ShapeError("diag_embed: input must have at least 1 dimension, got a 0-d tensor")
    n, k = x._data.shape[-1], int(offset)
    xp = backend.get_array_module(x._data)
    zero = _wrap(xp.zeros((), dtype=x._data.dtype))
    square = where(_wrap(xp.eye(n, dtype=bool)), unsqueeze(x, -2), zero)
    a = abs(k)
    return pad(square, (a, 0, 0, a) if k >= 0 else (0, a, a, 0))


@method
def diag(input, diagonal: int = 0) -> Tensor:
    """1-D input: a square matrix with it on the ``diagonal``; 2-D input: that diagonal.

    Example:
        >>> import chainrule
        >>> chainrule.diag(chainrule.tensor([1.0, 2.0]))
        tensor([[1., 0.],
                [0., 2.]])
        >>> chainrule.diag(chainrule.eye(3), -1)
        tensor([0., 0.])
    """
    x = _t(input)
    if x._data.ndim == 1:
        return diag_embed(x, diagonal)
    if x._data.ndim == 2:
        return _diagonal(x, diagonal)
    raise ShapeError(f"diag: input must be 1-D or 2-D, got shape {tuple(x.shape)} (use "
                     "diagonal() or diag_embed() for batches)")


@method
@autocast_fp32
def trace(input) -> Tensor:
    """Sum of the main diagonal of a 2-D tensor.

    Example:
        >>> import chainrule
        >>> chainrule.trace(chainrule.eye(3))
        tensor(3.)
    """
    x = _t(input)
    if x._data.ndim != 2:
        raise ShapeError(f"trace: input must be 2-D, got shape {tuple(x.shape)}")
    return _sum(diagonal(x))


@method
def movedim(input, source, destination) -> Tensor:
    """Move dims ``source`` to positions ``destination``; the others keep their order.

    Example:
        >>> import chainrule
        >>> chainrule.movedim(chainrule.zeros(2, 3, 4), 0, -1).shape
        (3, 4, 2)
    """
    x = _t(input)
    nd = x._data.ndim
    src = [normalize_dim(d, nd, "movedim") for d in _ints(source, "movedim", "source")]
    dst = [normalize_dim(d, nd, "movedim") for d in _ints(destination, "movedim",
                                                          "destination")]
    if len(src) != len(dst) or len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError(f"movedim: source {src} and destination {dst} must be distinct dims "
                         "of equal count")
    order = [d for d in range(nd) if d not in src]
    for s, t in sorted(zip(dst, src)):
        order.insert(s, t)
    return permute(x, tuple(order))


moveaxis = method(movedim, "moveaxis")  # NumPy's name, as PyTorch offers it


@method
def tile(input, dims) -> Tensor:
    """Repeat the tensor ``dims[i]`` times along each dim (ones prepended as needed).

    Example:
        >>> import chainrule
        >>> chainrule.tile(chainrule.tensor([1, 2]), (2,))
        tensor([1, 2, 1, 2])
    """
    x = _t(input)
    dims = _ints(dims, "tile", "dims")
    dims = (1,) * (x._data.ndim - len(dims)) + dims
    return repeat(x, *dims)
