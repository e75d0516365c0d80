"""More top-level PyTorch functions as composites (issue 14): numel, meshgrid,
broadcast_tensors, cartesian_prod, std_mean, tensordot, kron, cross, rot90, cumprod, cdist,
frac, sgn; the counting and searching functions bincount, histc, searchsorted, bucketize (no
gradient); and the dtype helpers result_type, promote_types, can_cast.

Example:
    >>> import chainrule
    >>> chainrule.cumprod(chainrule.tensor([1.0, 2.0, 3.0]), 0)
    tensor([1., 2., 6.])
"""

from __future__ import annotations

from .. import backend
from ..backend import as_dtype
from ..errors import ShapeError
from ..tensor import Tensor, _wrap
from ._amp import autocast_fp32
from ._util import float32_inside, method, normalize_dim
from .elementwise import _t, clamp, sign, sqrt, trunc
from .linalg import einsum
from .reduce import std, sum
from .shape import broadcast_to, cat, flip, getitem, reshape, stack, transpose, unsqueeze

_np = backend.np


def numel(input) -> int:
    """The number of elements.

    Example:
        >>> import chainrule
        >>> chainrule.numel(chainrule.zeros(2, 3))
        6
    """
    return _t(input).numel()


def broadcast_tensors(*tensors):
    """The tensors broadcast to their common shape.

    Example:
        >>> import chainrule
        >>> [t.shape for t in chainrule.broadcast_tensors(chainrule.ones(3, 1), chainrule.ones(2))]
        [(3, 2), (3, 2)]
    """
    ts = [_t(t) for t in tensors]
    shape = _np.broadcast_shapes(*(tuple(t.shape) for t in ts))
    return tuple(t if tuple(t.shape) == shape else broadcast_to(t, shape) for t in ts)


def meshgrid(*tensors, indexing: str = "ij"):
    """Coordinate grids from 1-D tensors (``indexing="ij"`` or ``"xy"``).

    Example:
        >>> import chainrule
        >>> a, b = chainrule.meshgrid(chainrule.arange(2), chainrule.arange(3), indexing="ij")
        >>> a.shape, b[1].tolist()
        ((2, 3), [0, 1, 2])
    """
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = [_t(t) for t in tensors]
    for t in ts:
        if t.ndim > 1:
            raise ShapeError(f"meshgrid: expected 0-D or 1-D tensors, got shape {tuple(t.shape)}")
    ts = [reshape(t, (-1,)) for t in ts]
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    n = len(ts)
    shape = tuple(t.shape[0] for t in ts)
    out = [broadcast_to(reshape(t, tuple(-1 if k == i else 1 for k in range(n))), shape)
           for i, t in enumerate(ts)]
    if swap:  # grids of (t1, t0, ...) in "ij" order are the "xy" grids of (t0, t1, ...)
        out[0], out[1] = out[1], out[0]
    return tuple(out)


def cartesian_prod(*tensors) -> Tensor:
    """All combinations of the entries of 1-D tensors, one per row.

    Example:
        >>> import chainrule
        >>> chainrule.cartesian_prod(chainrule.tensor([1, 2]), chainrule.tensor([3, 4])).tolist()
        [[1, 3], [1, 4], [2, 3], [2, 4]]
    """
    if len(tensors) == 1:
        return _t(tensors[0])
    grids = meshgrid(*tensors, indexing="ij")
    return stack([reshape(g, (-1,)) for g in grids], 1)


def std_mean(input, dim=None, *, correction=1, keepdim: bool = False):
    """(std, mean) over ``dim``.

    Example:
        >>> import chainrule
        >>> chainrule.std_mean(chainrule.tensor([1.0, 3.0]))
        (tensor(1.4142), tensor(2.))
    """
    from .reduce import mean  # noqa: PLC0415

    x = _t(input)
    return (std(x, dim, correction=correction, keepdim=keepdim),
            mean(x, dim, keepdim=keepdim))


def tensordot(a, b, dims=2) -> Tensor:
    """Contract the last ``dims`` dims of ``a`` with the first of ``b`` (or the listed pairs
    ``dims=([...], [...])``).

    Example:
        >>> import chainrule
        >>> chainrule.tensordot(chainrule.ones(2, 3, 4), chainrule.ones(3, 4, 5)).shape
        (2, 5)
    """
    a, b = _t(a), _t(b)
    if isinstance(dims, int):
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = ([dims[0]] if isinstance(dims[0], int) else list(dims[0]),
                  [dims[1]] if isinstance(dims[1], int) else list(dims[1]))
    da = [normalize_dim(d, a.ndim, "tensordot") for d in da]
    db = [normalize_dim(d, b.ndim, "tensordot") for d in db]
    if len(da) != len(db) or any(a.shape[i] != b.shape[j] for i, j in zip(da, db)):
        raise ShapeError(f"tensordot: cannot contract dims {da} of {tuple(a.shape)} with dims "
                         f"{db} of {tuple(b.shape)}")
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    la = list(letters[:a.ndim])
    lb = list(letters[a.ndim:a.ndim + b.ndim])
    for i, j in zip(da, db):
        lb[j] = la[i]
    out = [c for k, c in enumerate(la) if k not in da] + \
        [c for k, c in enumerate(lb) if k not in db]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", a, b)


@method
def kron(input, other) -> Tensor:
    """The Kronecker product.

    Example:
        >>> import chainrule
        >>> chainrule.kron(chainrule.eye(2), chainrule.ones(2, 2)).shape
        (4, 4)
    """
    a, b = _t(input), _t(other)
    nd = max(a.ndim, b.ndim)
    a = reshape(a, (1,) * (nd - a.ndim) + tuple(a.shape))
    b = reshape(b, (1,) * (nd - b.ndim) + tuple(b.shape))
    inter_a = tuple(s for n in a.shape for s in (n, 1))
    inter_b = tuple(s for n in b.shape for s in (1, n))
    prod = reshape(a, inter_a) * reshape(b, inter_b)
    return reshape(prod, tuple(x * y for x, y in zip(a.shape, b.shape)))


@method
def cross(input, other, dim=None) -> Tensor:
    """The cross product of 3-vectors along ``dim`` (the first dimension of size 3 when
    None, as PyTorch's ``torch.cross`` default).

    Example:
        >>> import chainrule
        >>> chainrule.cross(chainrule.tensor([1.0, 0.0, 0.0]), chainrule.tensor([0.0, 1.0, 0.0]))
        tensor([0., 0., 1.])
    """
    a, b = broadcast_tensors(input, other)
    if dim is None:
        dim = next((k for k, n in enumerate(a.shape) if n == 3), None)
        if dim is None:
            raise ShapeError(f"cross: no dimension of size 3 in shape {tuple(a.shape)}")
    d = normalize_dim(dim, a.ndim, "cross")
    if a.shape[d] != 3:
        raise ShapeError(f"cross: dimension {dim} has size {a.shape[d]}, expected 3")

    def c(t, i):
        return getitem(t, (slice(None),) * d + (i,))

    return stack([c(a, 1) * c(b, 2) - c(a, 2) * c(b, 1), c(a, 2) * c(b, 0) - c(a, 0) * c(b, 2),
                  c(a, 0) * c(b, 1) - c(a, 1) * c(b, 0)], d)


@method
def rot90(input, k: int = 1, dims=(0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times in the plane of ``dims`` (from the first towards the
    second).

    Example:
        >>> import chainrule
        >>> chainrule.rot90(chainrule.tensor([[1, 2], [3, 4]]))
        tensor([[2, 4],
                [1, 3]])
    """
    x = _t(input)
    d0, d1 = (normalize_dim(d, x.ndim, "rot90") for d in dims)
    if d0 == d1:
        raise ValueError(f"rot90: dims must differ, got {dims}")
    k %= 4
    if k == 1:
        return transpose(flip(x, [d1]), d0, d1)
    if k == 2:
        return flip(x, [d0, d1])
    if k == 3:
        return flip(transpose(x, d0, d1), [d1])
    return x


@method
@float32_inside
def cumprod(input, dim: int, *, dtype=None) -> Tensor:
    """Running product along ``dim`` (exact gradients, zeros included).

    Example:
        >>> import chainrule
        >>> chainrule.cumprod(chainrule.tensor([2, 0, 3]), 0)
        tensor([2, 0, 0])
    """
    x = _t(input)
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim == 0:
        return x * 1
    d = normalize_dim(dim, x.ndim, "cumprod")
    lead = (slice(None),) * d
    parts = [getitem(x, lead + (slice(0, 1),))]
    for i in range(1, x.shape[d]):
        parts.append(parts[-1] * getitem(x, lead + (slice(i, i + 1),)))
    return cat(parts, d) if parts[0].shape[d] else x


@autocast_fp32
@float32_inside
def cdist(x1, x2, p: float = 2.0) -> Tensor:
    """Distances between the rows of ``x1`` (..., P, M) and ``x2`` (..., R, M): (..., P, R).

    Example:
        >>> import chainrule
        >>> chainrule.cdist(chainrule.tensor([[0.0, 0.0]]), chainrule.tensor([[3.0, 4.0]]))
        tensor([[5.]])
    """
    a, b = _t(x1), _t(x2)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-1]:
        raise ShapeError(f"cdist: expected (..., P, M) and (..., R, M), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    diff = unsqueeze(a, -2) - unsqueeze(b, -3)
    if p == 2.0:
        return sqrt(clamp(sum(diff * diff, -1), min=0.0))
    from .reduce import norm  # noqa: PLC0415

    return norm(diff, p, dim=-1)


@method
def frac(input) -> Tensor:
    """The fractional part, ``input - trunc(input)``.

    Example:
        >>> import chainrule
        >>> chainrule.frac(chainrule.tensor([-1.5, 2.25]))
        tensor([-0.5000,  0.2500])
    """
    x = _t(input)
    return x - trunc(x)


@method
def sgn(input) -> Tensor:
    """The sign (PyTorch's complex-aware sign; real tensors only here).

    Example:
        >>> import chainrule
        >>> chainrule.sgn(chainrule.tensor([-2.0, 0.0, 3.0]))
        tensor([-1.,  0.,  1.])
    """
    return sign(input)


@method
def bincount(input, weights=None, minlength: int = 0) -> Tensor:
    """Counts (or summed ``weights``) of each non-negative integer value.

    Example:
        >>> import chainrule
        >>> chainrule.bincount(chainrule.tensor([0, 2, 2]))
        tensor([1, 0, 2])
    """
    x = _t(input)
    if x.ndim != 1 or x._data.dtype.kind not in "iu":
        raise TypeError(f"bincount: expected a 1-D integer tensor, got {x.dtype.name} with "
                        f"shape {tuple(x.shape)}")
    xp = backend.get_array_module(x._data)
    w = None if weights is None else _t(weights)._data
    return _wrap(xp.bincount(x._data, weights=w, minlength=minlength))


@method
def histc(input, bins: int = 100, min: float = 0.0, max: float = 0.0) -> Tensor:
    """A histogram of ``bins`` equal bins over [min, max] (the data's range when both are 0);
    values outside are ignored.

    Example:
        >>> import chainrule
        >>> chainrule.histc(chainrule.tensor([1.0, 2.0, 1.0]), bins=4, min=0, max=3)
        tensor([0., 2., 1., 0.])
    """
    x = _t(input)
    xp = backend.get_array_module(x._data)
    lo, hi = float(min), float(max)
    if lo == hi == 0.0:
        lo, hi = float(x._data.min()), float(x._data.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    counts, _ = xp.histogram(x._data, bins=bins, range=(lo, hi))
    return _wrap(counts.astype(x._data.dtype))


def searchsorted(sorted_sequence, values, *, out_int32: bool = False, right: bool = False,
                 side=None, sorter=None) -> Tensor:
    """Indices where ``values`` would be inserted into the sorted last dimension of
    ``sorted_sequence`` (1-D, or one row per leading index).

    Example:
        >>> import chainrule
        >>> chainrule.searchsorted(chainrule.tensor([1, 3, 5]), chainrule.tensor([3, 6]))
        tensor([1, 3])
    """
    seq = _t(sorted_sequence)
    v = _t(values)
    xp = backend.get_array_module(seq._data)
    how = side or ("right" if right else "left")
    s, vals = seq._data, v._data
    if sorter is not None:
        s = xp.take_along_axis(s, _t(sorter)._data, axis=-1)
    if s.ndim == 1:
        out = xp.searchsorted(s, vals, side=how)
    else:
        out = xp.stack([xp.searchsorted(r, q, side=how) for r, q in
                        zip(s.reshape(-1, s.shape[-1]), vals.reshape(-1, vals.shape[-1]))])
        out = out.reshape(vals.shape)
    return _wrap(out.astype("int32" if out_int32 else "int64"))


def bucketize(input, boundaries, *, out_int32: bool = False, right: bool = False) -> Tensor:
    """The bucket of each value among the 1-D sorted ``boundaries``.

    Example:
        >>> import chainrule
        >>> chainrule.bucketize(chainrule.tensor([0.5, 2.0]), chainrule.tensor([1.0, 2.0]))
        tensor([0, 1])
    """
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def result_type(tensor1, tensor2):
    """The dtype an op on the two would produce (Python numbers count as weak types).

    Example:
        >>> import chainrule
        >>> chainrule.result_type(chainrule.ones(1, dtype=chainrule.int64), 1.0)
        chainrule.float32
    """
    from ._util import promote  # noqa: PLC0415

    a, _ = promote(tensor1 if isinstance(tensor1, Tensor) else _t(tensor1), tensor2,
                   "result_type")
    return a.dtype


def promote_types(type1, type2):
    """The smallest dtype both ``type1`` and ``type2`` cast to.

    Example:
        >>> import chainrule
        >>> chainrule.promote_types(chainrule.int32, chainrule.float32)
        chainrule.float32
    """
    return backend.result_type((as_dtype(type1), 1), (as_dtype(type2), 1))


def can_cast(from_, to) -> bool:
    """Whether PyTorch's casting rules allow ``from_`` to ``to`` (no float to integer, no
    number to bool).

    Example:
        >>> import chainrule
        >>> chainrule.can_cast(chainrule.float32, chainrule.int64)
        False
    """
    return as_dtype(from_).category <= as_dtype(to).category


