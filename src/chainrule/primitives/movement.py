"""Movement primitives: reshape, permute, broadcast_to / sum_to, getitem / scatter_to,
index_put, concatenate, pad, flip, gather / scatter_add, copy.

Pairs that are each other's transpose sit together (getitem and scatter_to, gather and
scatter_add, broadcast_to and sum_to), so each one's vjp is the other.
"""

from __future__ import annotations

import numpy as np

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
# getitem, scatter_to and index_put take their index arrays (integer arrays, NumPy's advanced
# indexing) as trailing inputs, not differentiable (None rules); the ``index=`` param is the
# static rest of the index (ints, slices, None, Ellipsis, Python bools), holding an
# :class:`IndexArg` where input array k goes. A trace sees new indices as new inputs; vmap
# batches them as any other input. Basic indexing (no arrays, the hot path) has none.
class IndexArg:
    """The place of index array ``k`` (the k-th index input) in an ``index=`` template of
    getitem, scatter_to or index_put.

    Example:
        >>> import numpy as np
        >>> template, arrays = split_index((np.array([2, 0]), slice(1, 3)))
        >>> template
        (IndexArg(0), slice(1, 3, None))
    """

    __slots__ = ("k",)

    def __init__(self, k: int):
        self.k = k

    def __eq__(self, other):
        return type(other) is IndexArg and other.k == self.k

    def __hash__(self):
        return hash((IndexArg, self.k))

    def __repr__(self):
        return f"IndexArg({self.k})"

    def __reduce__(self):
        return IndexArg, (self.k,)


def _is_index_array(e) -> bool:
    return hasattr(e, "shape") and not isinstance(e, np.generic) and not isinstance(e, Aval)


def split_index(index: tuple) -> tuple[tuple, tuple]:
    """``(template, arrays)`` of an index tuple: each array (or tensor) in it moves to
    ``arrays`` and an :class:`IndexArg` takes its place, in order.

    Example:
        >>> import numpy as np
        >>> split_index((slice(None), np.array([1])))[0]
        (slice(None, None, None), IndexArg(0))
    """
    if not any(_is_index_array(e) for e in index):
        return index, ()
    arrays = []
    template = []
    for e in index:
        if _is_index_array(e):
            template.append(IndexArg(len(arrays)))
            arrays.append(e)
        else:
            template.append(e)
    return tuple(template), tuple(arrays)


def fill_index(template: tuple, arrays) -> tuple:
    """The index tuple of a template with its :class:`IndexArg` places filled from
    ``arrays`` (arrays, tensors or Avals).

    Example:
        >>> fill_index((IndexArg(0), 1), ["a"])
        ('a', 1)
    """
    return tuple(arrays[e.k] if type(e) is IndexArg else e for e in template)


def _checked_template(op: str, index, arrays) -> tuple:
    """The filled index of a shape rule, after checking the template and its inputs."""
    if not isinstance(index, tuple):
        index = (index,)
    ks = [e.k for e in index if type(e) is IndexArg]
    bad = [e for e in index if _is_index_array(e)]
    if bad:
        raise TypeError(f"{op}: an index array of shape {tuple(bad[0].shape)} in the index= "
                        "param; index arrays are inputs (an IndexArg marks their place, "
                        "movement.split_index makes the pair)")
    if ks != list(range(len(arrays))):
        raise TypeError(f"{op}: the index template's IndexArg places {ks} do not match the "
                        f"{len(arrays)} index input(s)")
    for a in arrays:
        kind = getattr(a.dtype, "kind", "?")
        if kind not in "iu":
            raise IndexError(f"{op}: index arrays must be integer arrays, got one of dtype "
                             f"{a.dtype} and shape {tuple(a.shape)}")
    return fill_index(index, arrays)


def _getitem(xp, x, *arrays, index):
    return x[fill_index(index, arrays) if arrays else index]


def _is_basic(index) -> bool:
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in index)


def _scatter_to(xp, g, *arrays, shape, index):
    out = xp.zeros(shape, dtype=g.dtype)
    if arrays:  # repeated indices add up
        _add_at(xp, out, fill_index(index, arrays), g)
    elif _is_basic(index):
        out[index] = g
    else:  # a rule on raw arrays skips the shape rule: an assignment would drop repeats
        _checked_template("scatter_to", index, arrays)
        raise TypeError(f"scatter_to: unsupported index {index!r}")
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


def _getitem_vjp(F, g, x, *rest, argnum, index):
    if argnum:
        return None  # an index array: not differentiable
    return F.scatter_to(g, *rest[:-1], shape=x.shape, index=index)


def _getitem_jvp(F, t, x, *rest, argnum, index):
    return None if argnum else F.getitem(t, *rest[:-1], index=index)


getitem = Primitive(
    "getitem", _getitem, view=True, variadic=True, index_from=1,
    vjp=[_getitem_vjp], jvp=[_getitem_jvp], kind="movement",
    shape=lambda x, *arrays, index: Aval(
        indexed("getitem", x.shape, _checked_template("getitem", index, arrays)), x.dtype))


def _scatter_to_vjp(F, g, x, *rest, argnum, shape, index):
    return None if argnum else F.getitem(g, *rest[:-1], index=index)


def _scatter_to_jvp(F, t, x, *rest, argnum, shape, index):
    return None if argnum else F.scatter_to(t, *rest[:-1], shape=shape, index=index)


def _scatter_to_shape(g, *arrays, shape, index) -> Aval:
    _checked_template("scatter_to", index, arrays)
    return Aval(tuple(shape), g.dtype)


scatter_to = Primitive(
    "scatter_to", _scatter_to, variadic=True, index_from=1,
    vjp=[_scatter_to_vjp], jvp=[_scatter_to_jvp], kind="movement", shape=_scatter_to_shape)


def _index_put(xp, x, v, *arrays, index):
    out = x.copy()
    out[fill_index(index, arrays) if arrays else index] = v
    return out


def _index_put_vjp(F, g, x, v, *rest, argnum, index):
    arrays = rest[:-1]
    if argnum == 0:  # the written places get nothing back
        return F.index_put(g, 0, *arrays, index=index)
    return F.getitem(g, *arrays, index=index) if argnum == 1 else None


def _index_put_jvp(F, t, x, v, *rest, argnum, index):
    arrays, out = rest[:-1], rest[-1]
    if argnum == 0:
        return F.index_put(t, 0, *arrays, index=index)
    if argnum == 1:
        return F.index_put(F.zeros_like(out), t, *arrays, index=index)
    return None


def _index_put_shape(x, v, *arrays, index) -> Aval:
    _checked_template("index_put", index, arrays)
    return Aval(x.shape, x.dtype)


index_put = Primitive(
    "index_put", _index_put, variadic=True, index_from=2,
    vjp=[_index_put_vjp], jvp=[_index_put_jvp], kind="movement", shape=_index_put_shape)


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
