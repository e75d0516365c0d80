"""Movement primitives: reshape, permute, broadcast_to / sum_to, getitem / scatter_to,
index_put, concatenate, pad, flip, gather / scatter_add, copy.

Pairs that are each other's transpose sit together (getitem and scatter_to, gather and
scatter_add, broadcast_to and sum_to), so each one's vjp is the other.
"""

from __future__ import annotations

from ..backend.avals import sum_dtype
from ..errors import ShapeError
from .core import Aval, Primitive
from .fast import K, kernel
from .shapes import elementwise, indexed, like_input, promoted, reshaped, same_dtype

reshape = Primitive(
    "reshape", lambda xp, x, shape: xp.reshape(x, shape), view=True,
    vjp=[lambda F, g, x, out, shape: F.reshape(g, shape=x.shape)],
    jvp=[lambda F, t, x, out, shape: F.reshape(t, shape=shape)], kind="movement",
    shape=lambda x, shape: Aval(reshaped("reshape", x.shape, shape), x.dtype))


def _inverse_perm(axes):
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


def _permuted(x, axes) -> Aval:
    if sorted(axes) != list(range(len(x.shape))):
        raise ShapeError(f"permute: axes {tuple(axes)} are not a permutation of the "
                         f"{len(x.shape)} axes of shape {tuple(x.shape)}")
    return Aval(tuple(x.shape[a] for a in axes), x.dtype)


permute = Primitive(
    "permute", lambda xp, x, axes: xp.transpose(x, axes), view=True,
    vjp=[lambda F, g, x, out, axes: F.permute(g, axes=_inverse_perm(axes))],
    jvp=[lambda F, t, x, out, axes: F.permute(t, axes=axes)], kind="movement",
    shape=_permuted)

def _broadcast_to_shape(x, shape) -> Aval:
    shape = tuple(shape)
    lead = len(shape) - len(x.shape)
    if lead < 0 or any(n not in (1, m) for n, m in zip(x.shape, shape[lead:])):
        raise ShapeError(f"broadcast_to: shape {tuple(x.shape)} cannot be broadcast to {shape}")
    return Aval(shape, x.dtype)


broadcast_to = Primitive(
    "broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape), view=True,
    vjp=[lambda F, g, x, out, shape: g],  # the engine sums back to x's shape
    jvp=[lambda F, t, x, out, shape: F.broadcast_to(t, shape=shape)], kind="movement",
    shape=_broadcast_to_shape)


def sum_to_axes(shape_from: tuple, shape_to: tuple):
    """Axes to sum (keeping dims) so that ``shape_from`` reduces to ``shape_to``."""
    lead = len(shape_from) - len(shape_to)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape_to) if n == 1 and shape_from[lead + i] != 1)
    return lead, axes


def _sum_to(xp, x, shape):
    if x.shape == shape:
        return x
    lead, axes = sum_to_axes(x.shape, shape)
    if len(axes) == lead:  # only leading dims summed (a bias gradient): BLAS
        out = K.blas_sum(xp, x, axes)
        if out is not None:
            return out
    out = xp.sum(x, axis=axes, keepdims=True) if axes else x
    if lead:
        out = out.reshape(out.shape[lead:])
    return out


def _sum_to_shape(x, shape) -> Aval:
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return Aval(shape, x.dtype)
    _broadcast_to_shape(Aval(shape, x.dtype), x.shape)  # shape must broadcast to x's
    return Aval(shape, sum_dtype(x.dtype))


sum_to = Primitive(
    "sum_to", _sum_to,
    vjp=[lambda F, g, x, out, shape: F.broadcast_to(g, shape=x.shape)],
    jvp=[lambda F, t, x, out, shape: F.sum_to(t, shape=shape)], kind="movement",
    shape=_sum_to_shape)

copy = Primitive(
    "copy", lambda xp, x: x.copy(),
    vjp=[lambda F, g, x, out: g],
    jvp=[lambda F, t, x, out: t], kind="elementwise",
    shape=elementwise(None, same_dtype()))


# ---------------------------------------------------------------- indexing
def _is_basic(index) -> bool:
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in index)


def _scatter_to(xp, g, shape, index):
    out = xp.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    else:
        _add_at(xp, out, index, g)
    return out


def _add_at(xp, out, index, values):
    if xp.__name__ == "numpy":
        if not K.rows_add(xp, out, index, values):
            xp.add.at(out, index, values)
    else:  # cupyx.scatter_add
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(out, index, values)


@kernel("rows_add")
def _rows_add(np, out, index, values) -> bool | None:
    """``out[rows] += values`` with repeated rows summed, for one integer array indexing the
    first axis (an embedding's backward): sort the rows, sum each run with ``reduceat``, add
    once per distinct row, instead of ``np.add.at``'s per-element loop (figure in
    BENCHMARKS.md, "Measurements behind the code"). None (nothing done) when the case does
    not fit."""
    idx = index[0] if len(index) == 1 else None
    if (idx is None or not hasattr(idx, "dtype") or idx.dtype.kind not in "iu" or idx.size < 32
            or out.ndim < 2 or out.size == 0 or values.shape != idx.shape + out.shape[1:]):
        return None
    flat = idx.reshape(-1)
    n = out.shape[0]
    lo, hi = int(flat.min()), int(flat.max())
    if lo < -n or hi >= n:
        return None  # np.add.at raises the IndexError
    if lo < 0:
        flat = np.where(flat < 0, flat + n, flat)
    order = np.argsort(flat, kind="stable")
    rows = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
    sums = np.add.reduceat(values.reshape(flat.size, -1)[order], starts, axis=0)
    out.reshape(n, -1)[rows[starts]] += sums
    return True


getitem = Primitive(
    "getitem", lambda xp, x, index: x[index], view=True,
    vjp=[lambda F, g, x, out, index: F.scatter_to(g, shape=x.shape, index=index)],
    jvp=[lambda F, t, x, out, index: F.getitem(t, index=index)], kind="movement",
    shape=lambda x, index: Aval(indexed("getitem", x.shape, index), x.dtype))

scatter_to = Primitive(
    "scatter_to", _scatter_to,
    vjp=[lambda F, g, x, out, shape, index: F.getitem(g, index=index)],
    jvp=[lambda F, t, x, out, shape, index: F.scatter_to(t, shape=shape, index=index)],
    kind="movement",
    shape=lambda g, shape, index: Aval(tuple(shape), g.dtype))


def _index_put(xp, x, v, index):
    out = x.copy()
    out[index] = v
    return out


index_put = Primitive(
    "index_put", _index_put,
    vjp=[lambda F, g, x, v, out, index: F.index_put(g, 0, index=index),
         lambda F, g, x, v, out, index: F.getitem(g, index=index)],
    jvp=[lambda F, t, x, v, out, index: F.index_put(t, 0, index=index),
         lambda F, t, x, v, out, index: F.index_put(F.zeros_like(out), t, index=index)],
         kind="movement",
    shape=lambda x, v, index: Aval(x.shape, x.dtype))


def _concat_vjp(F, g, *args, argnum, axis):
    xs = args[:-1]
    start = sum(x.shape[axis] for x in xs[:argnum])
    stop = start + xs[argnum].shape[axis]
    return F.getitem(g, index=(slice(None),) * axis + (slice(start, stop),))


def _concat_jvp(F, t, *args, argnum, axis):
    xs = args[:-1]
    before = sum(x.shape[axis] for x in xs[:argnum])
    after = sum(x.shape[axis] for x in xs[argnum + 1:])
    widths = tuple((0, 0) if d != axis else (before, after) for d in range(len(xs[0].shape)))
    return F.pad(t, widths=widths, value=0)


def _concatenate(xp, *xs, axis):
    # into an explicit C-order array: NumPy otherwise copies the inputs' stride order, and a
    # reshape of the result then copies again (4x slower for permuted inputs, measured)
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return xp.concatenate(xs, axis=axis, out=xp.empty(shape, dtype=xp.result_type(*xs)))


def _concat_shape(*xs, axis) -> Aval:
    first = tuple(xs[0].shape)
    for x in xs[1:]:
        s = tuple(x.shape)
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeError(f"concatenate: shapes {first} and {s} differ outside axis {axis}")
    size = sum(x.shape[axis] for x in xs)
    return Aval(first[:axis] + (size,) + first[axis + 1:], promoted(*xs))


concatenate = Primitive(
    "concatenate", _concatenate,
    vjp=[_concat_vjp], jvp=[_concat_jvp], variadic=True, kind="movement",
    shape=_concat_shape)


def _pad(xp, x, widths, value):
    return xp.pad(x, widths, mode="constant", constant_values=value)


def _unpad_index(shape, widths):
    """The slices of a padded array that hold the original of ``shape``."""
    return tuple(slice(lo, lo + n) for n, (lo, _) in zip(shape, widths))


def _padded_shape(x, widths, value) -> Aval:
    return Aval(tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, widths)), x.dtype)


pad = Primitive(
    "pad", _pad,
    vjp=[lambda F, g, x, out, widths, value: F.getitem(g, index=_unpad_index(x.shape, widths))],
    jvp=[lambda F, t, x, out, widths, value: F.pad(t, widths=widths, value=0)], kind="movement",
    shape=_padded_shape)

flip = Primitive(
    "flip", lambda xp, x, axes: xp.flip(x, axis=axes), view=True,
    vjp=[lambda F, g, x, out, axes: F.flip(g, axes=axes)],
    jvp=[lambda F, t, x, out, axes: F.flip(t, axes=axes)], kind="movement",
    shape=like_input)


# gather (torch.gather / take_along_axis) and its transpose scatter_add
def _along_index(xp, idx, axis):
    """Full index tuple that addresses ``x[..., idx[...], ...]`` along ``axis``."""
    grids = list(xp.indices(idx.shape, sparse=True))
    grids[axis] = idx
    return tuple(grids)


# The index array is an input (not differentiable), not a param: a trace sees new indices as
# a new input, and vmap batches them as any other input.
gather = Primitive(
    "gather", lambda xp, x, idx, axis: xp.take_along_axis(x, idx, axis=axis),
    save="in", reads=((1,), ()),
    vjp=[lambda F, g, x, idx, out, axis: F.scatter_add(g, idx, shape=x.shape, axis=axis), None],
    jvp=[lambda F, t, x, idx, out, axis: F.gather(t, idx, axis=axis), None], kind="movement",
    shape=lambda x, idx, axis: Aval(tuple(idx.shape), x.dtype))


def _scatter_add(xp, g, idx, shape, axis):
    out = xp.zeros(shape, dtype=g.dtype)
    _add_at(xp, out, _along_index(xp, idx, axis), g)
    return out


scatter_add = Primitive(
    "scatter_add", _scatter_add, save="in", reads=((1,), ()),
    vjp=[lambda F, g, src, idx, out, shape, axis: F.gather(g, idx, axis=axis), None],
    jvp=[lambda F, t, src, idx, out, shape, axis: F.scatter_add(t, idx, shape=shape, axis=axis),
         None], kind="movement",
    shape=lambda g, idx, shape, axis: Aval(tuple(shape), g.dtype))
