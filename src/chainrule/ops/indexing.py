"""Scatter and selection composites with PyTorch names: scatter, scatter_add, index_add,
index_fill, index_copy, masked_select, repeat_interleave, select, unfold, nonzero, argwhere,
count_nonzero, unique.

The differentiable ones are built from getitem, gather's adjoint (scatter-add) and ``where``;
the ones whose result is a set of positions (nonzero, unique) have no gradient.

Example:
    >>> import chainrule
    >>> chainrule.scatter_add(chainrule.zeros(3), 0, chainrule.tensor([0, 2, 0]),
    ...                       chainrule.tensor([1.0, 2.0, 3.0]))
    tensor([4., 0., 2.])
"""

from __future__ import annotations

from .. import backend
from ..errors import ShapeError
from ..primitives import movement as _PM
from ..tensor import Tensor, _wrap
from ._util import cast, method, normalize_dim
from .elementwise import _t, where
from .shape import getitem, index_select, masked_fill, reshape

_np = backend.np


def _index(index, op: str):
    i = index if isinstance(index, Tensor) else _t(index)
    if i._data.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got {i.dtype.name}")
    return i._data


def _scatter_parts(input, dim, index, src, op):
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, op)
    idx = _index(index, op)
    if idx.ndim != x._data.ndim:
        raise ShapeError(f"{op}: index must have as many dimensions as the input "
                         f"({x._data.ndim}), got shape {tuple(idx.shape)}")
    if isinstance(src, Tensor):
        if any(i > s for i, s in zip(idx.shape, src.shape)):
            raise ShapeError(f"{op}: index shape {tuple(idx.shape)} is larger than src shape "
                             f"{tuple(src.shape)}")
        src = getitem(src, tuple(slice(0, n) for n in idx.shape)) \
            if tuple(src.shape) != tuple(idx.shape) else src
        src = cast(src, x.dtype) if src.dtype != x.dtype else src
    else:
        src = _wrap(backend.get_array_module(x._data).full(idx.shape, src, dtype=x._data.dtype))
    n = x._data.shape[d]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"{op}: index out of range for dimension {dim} of size {n}")
    idx = idx % n if idx.size else idx
    if any(i > s for k, (i, s) in enumerate(zip(idx.shape, x._data.shape)) if k != d):
        raise ShapeError(f"{op}: index shape {tuple(idx.shape)} does not fit in input shape "
                         f"{tuple(x.shape)} outside dimension {dim}")
    return x, d, idx.astype("int64"), src


def _padded(t: Tensor, shape):
    """``t`` (smaller than ``shape`` in some dims) zero-padded at the end to ``shape``."""
    if tuple(t.shape) == tuple(shape):
        return t
    from .shape import pad  # noqa: PLC0415

    widths = []
    for n, s in zip(reversed(t.shape), reversed(shape)):
        widths += [0, s - n]
    return pad(t, widths)


@method
def scatter_add(input, dim: int, index, src) -> Tensor:
    """``out = input`` then ``out[index[i][j]][j] += src[i][j]`` (for dim 0), as PyTorch.

    Example:
        >>> import chainrule
        >>> chainrule.scatter_add(chainrule.zeros(2, 2), 1, chainrule.tensor([[1, 1]]),
        ...                       chainrule.ones(1, 2))
        tensor([[0., 2.],
                [0., 0.]])
    """
    x, d, idx, src = _scatter_parts(input, dim, index, src, "scatter_add")
    shape = tuple(x.shape[k] if k == d else idx.shape[k] for k in range(x._data.ndim))
    return x + _padded(_PM.scatter_add(src, _wrap(idx), shape=shape, axis=d), x.shape)


@method
def scatter(input, dim: int, index, src=None, *, value=None, reduce=None) -> Tensor:
    """``out = input`` then ``out[index[i][j]][j] = src[i][j]`` (for dim 0); ``src`` may be a
    number (or pass ``value=``). With repeated indices the result is one of the writes, as in
    PyTorch. ``reduce="add"`` is :func:`scatter_add`.

    Example:
        >>> import chainrule
        >>> chainrule.scatter(chainrule.zeros(3), 0, chainrule.tensor([2]), 5.0)
        tensor([0., 0., 5.])
    """
    if src is None:
        src = value
    if reduce == "add":
        return scatter_add(input, dim, index, src)
    if reduce is not None:
        raise ValueError(f"scatter: reduce={reduce!r} is not supported (only 'add')")
    x, d, idx, src = _scatter_parts(input, dim, index, src, "scatter")
    xp = backend.get_array_module(x._data)
    shape = tuple(x.shape[k] if k == d else idx.shape[k] for k in range(x._data.ndim))
    # keep one write per target (the last), so the values are not summed
    hit = _PM.scatter_add(_wrap(xp.ones(idx.shape, dtype="float64")), _wrap(idx), shape=shape,
                          axis=d)._data
    flat = _np.arange(int(_np.prod(idx.shape))).reshape(idx.shape)
    last = _np.zeros(shape, dtype="int64") - 1
    grids = list(_np.indices(idx.shape))
    grids[d] = backend.to_device(idx, backend.CPU) if xp is not _np else idx
    _np.maximum.at(last, tuple(grids), flat)
    keep = (flat == _np.take_along_axis(last, grids[d], axis=d))
    kept = where(_wrap(xp.asarray(keep)), src, 0)
    placed = _PM.scatter_add(kept, _wrap(idx), shape=shape, axis=d)
    mask = _padded(_wrap(hit > 0), x.shape)
    return where(mask, _padded(placed, x.shape), x)


def _along(idx, d: int, nd: int, shape):
    """An index array for ``dim`` d, broadcast to ``shape`` (index_add/index_copy)."""
    view = [1] * nd
    view[d] = -1
    return backend.get_array_module(idx).broadcast_to(idx.reshape(view), shape)


@method
def index_add(input, dim: int, index, source, *, alpha=1) -> Tensor:
    """``out = input`` then ``out[..., index[i], ...] += alpha * source[..., i, ...]``.

    Example:
        >>> import chainrule
        >>> chainrule.index_add(chainrule.zeros(3), 0, chainrule.tensor([0, 0]),
        ...                     chainrule.tensor([1.0, 2.0]))
        tensor([3., 0., 0.])
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "index_add")
    idx = _index(index, "index_add").reshape(-1)
    src = source if isinstance(source, Tensor) else _t(source)
    if src.ndim != x.ndim or src.shape[d] != idx.shape[0] or any(
            a != b for k, (a, b) in enumerate(zip(src.shape, x.shape)) if k != d):
        raise ShapeError(f"index_add: source shape {tuple(src.shape)} does not match input "
                         f"shape {tuple(x.shape)} with {idx.shape[0]} indices along dim {dim}")
    n = x._data.shape[d]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"index_add: index out of range for dimension {dim} of size {n}")
    full = _along(idx % n if idx.size else idx, d, x.ndim, src.shape).astype("int64")
    src = cast(src, x.dtype) if src.dtype != x.dtype else src
    return x + _PM.scatter_add(src if alpha == 1 else src * alpha,
                               _wrap(backend.get_array_module(full).ascontiguousarray(full)),
                               shape=x.shape, axis=d)


def _dim_mask(x: Tensor, d: int, idx, op: str):
    n = x._data.shape[d]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"{op}: index out of range for dimension {d} of size {n}")
    xp = backend.get_array_module(x._data)
    m = xp.zeros(n, dtype=bool)
    m[idx % n if idx.size else idx] = True
    view = [1] * x._data.ndim
    view[d] = n
    return _wrap(m.reshape(view))


@method
def index_fill(input, dim: int, index, value) -> Tensor:
    """``input`` with the entries at ``index`` along ``dim`` set to ``value``.

    Example:
        >>> import chainrule
        >>> chainrule.index_fill(chainrule.ones(2, 3), 1, chainrule.tensor([0, 2]), -1.0)
        tensor([[-1.,  1., -1.],
                [-1.,  1., -1.]])
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "index_fill")
    return masked_fill(x, _dim_mask(x, d, _index(index, "index_fill").reshape(-1),
                                    "index_fill"), value)


@method
def index_copy(input, dim: int, index, source) -> Tensor:
    """``input`` with ``source[..., i, ...]`` copied to position ``index[i]`` along ``dim``.

    Example:
        >>> import chainrule
        >>> chainrule.index_copy(chainrule.zeros(3), 0, chainrule.tensor([2, 0]),
        ...                      chainrule.tensor([5.0, 6.0]))
        tensor([6., 0., 5.])
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "index_copy")
    idx = _index(index, "index_copy").reshape(-1)
    mask = _dim_mask(x, d, idx, "index_copy")
    placed = index_add(x * 0 if x._data.dtype.kind != "b" else cast(x, backend.int64) * 0,
                       d, index, source)
    return where(mask, cast(placed, x.dtype), x)


@method
def masked_select(input, mask) -> Tensor:
    """The entries where ``mask`` (bool, broadcast) is true, as a 1-D tensor.

    Example:
        >>> import chainrule
        >>> m = chainrule.tensor([True, False, True])
        >>> chainrule.masked_select(chainrule.tensor([1, 2, 3]), m)
        tensor([1, 3])
    """
    x = _t(input)
    m = _t(mask)
    if m._data.dtype.kind != "b":
        raise TypeError(f"masked_select: mask must be a bool tensor, got {m.dtype.name}")
    shape = _np.broadcast_shapes(tuple(x.shape), tuple(m.shape))
    if tuple(x.shape) != shape:
        from .shape import broadcast_to  # noqa: PLC0415

        x = broadcast_to(x, shape)
    xp = backend.get_array_module(m._data)
    return getitem(x, _wrap(xp.broadcast_to(m._data, shape)))


@method
def repeat_interleave(input, repeats, dim=None, *, output_size=None) -> Tensor:
    """Each entry repeated ``repeats`` times (an int or one count per entry) along ``dim``
    (the flattened tensor when None).

    Example:
        >>> import chainrule
        >>> chainrule.repeat_interleave(chainrule.tensor([1, 2]), 2)
        tensor([1, 1, 2, 2])
    """
    x = _t(input)
    if dim is None:
        x, d = reshape(x, (-1,)), 0
    else:
        d = normalize_dim(dim, x._data.ndim, "repeat_interleave")
    n = x._data.shape[d]
    r = repeats._host() if isinstance(repeats, Tensor) else _np.asarray(repeats)
    if r.ndim == 0:
        r = _np.full(n, int(r))
    if r.shape != (n,) or (r < 0).any():
        raise ValueError(f"repeat_interleave: repeats must be a non-negative int or {n} counts, "
                         f"got {r.tolist()}")
    idx = _np.repeat(_np.arange(n), r)
    return index_select(x, d, _wrap(backend.to_device(idx, x.device)))


@method
def select(input, dim: int, index: int) -> Tensor:
    """The slice at ``index`` along ``dim`` (that dimension removed).

    Example:
        >>> import chainrule
        >>> chainrule.select(chainrule.arange(6).reshape(2, 3), 1, -1)
        tensor([2, 5])
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "select")
    return getitem(x, (slice(None),) * d + (int(index),))


@method
def unfold(input, dimension: int, size: int, step: int) -> Tensor:
    """Tensor.unfold: all windows of ``size`` along ``dimension``, ``step`` apart, as a new
    last dimension.

    Example:
        >>> import chainrule
        >>> chainrule.arange(5).unfold(0, 2, 2)
        tensor([[0, 1],
                [2, 3]])
    """
    x = _t(input)
    d = normalize_dim(dimension, x._data.ndim, "unfold")
    n = x._data.shape[d]
    if size > n or size < 0 or step <= 0:
        raise ValueError(f"unfold: size {size} and step {step} do not fit dimension "
                         f"{dimension} of size {n}")
    starts = _np.arange(0, n - size + 1, step)
    idx = (starts[:, None] + _np.arange(size)[None, :])
    win = getitem(x, (slice(None),) * d + (_wrap(backend.to_device(idx, x.device)),))
    from .rearrange import movedim  # noqa: PLC0415

    return movedim(win, d + 1, -1)


@method
def nonzero(input, *, as_tuple: bool = False):
    """Indices of the non-zero entries: an (n, ndim) int64 tensor, or one index tensor per
    dimension with ``as_tuple=True``.

    Example:
        >>> import chainrule
        >>> chainrule.nonzero(chainrule.tensor([[0, 1], [2, 0]]))
        tensor([[0, 1],
                [1, 0]])
    """
    x = _t(input)
    xp = backend.get_array_module(x._data)
    nz = xp.nonzero(x._data) if x._data.ndim else xp.nonzero(x._data.reshape(1))
    if as_tuple:
        return tuple(_wrap(i.astype("int64")) for i in nz)
    if not x._data.ndim:
        return _wrap(xp.zeros((int(nz[0].size), 0), dtype="int64"))
    return _wrap(xp.stack(nz, axis=1).astype("int64"))


@method
def argwhere(input) -> Tensor:
    """``nonzero(input)`` as an (n, ndim) tensor.

    Example:
        >>> import chainrule
        >>> chainrule.argwhere(chainrule.tensor([0.0, 3.0]))
        tensor([[1]])
    """
    return nonzero(input)


@method
def count_nonzero(input, dim=None) -> Tensor:
    """The number of non-zero entries (over ``dim`` when given).

    Example:
        >>> import chainrule
        >>> chainrule.count_nonzero(chainrule.tensor([0, 1, 2]))
        tensor(2)
    """
    from .reduce import sum as _sum  # noqa: PLC0415

    return _sum(_t(input) != 0, dim)


@method
def unique(input, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim=None):
    """The distinct values (sorted), optionally with the inverse indices and the counts.

    Example:
        >>> import chainrule
        >>> chainrule.unique(chainrule.tensor([3, 1, 3, 2]), return_counts=True)
        (tensor([1, 2, 3]), tensor([1, 1, 2]))
    """
    if dim is not None:
        raise NotImplementedError("unique: dim= is not supported; use unique on the flattened "
                                  "tensor or torch-style loops")
    x = _t(input)
    xp = backend.get_array_module(x._data)
    vals, inv, counts = xp.unique(x._data, return_inverse=True, return_counts=True)
    out = [_wrap(vals)]
    if return_inverse:
        out.append(_wrap(inv.reshape(x.shape).astype("int64")))
    if return_counts:
        out.append(_wrap(counts.astype("int64")))
    return out[0] if len(out) == 1 else tuple(out)
