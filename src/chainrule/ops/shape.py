"""Shape and indexing ops: reshape, view, flatten, squeeze, unsqueeze, transpose, permute,
expand, broadcast_to, repeat, cat, stack, split, chunk, flip, gather, index_select,
masked_fill, tril, triu, pad, getitem, setitem.

Example:
    >>> import chainrule
    >>> x = chainrule.arange(6).reshape(2, 3)
    >>> x.T.shape, chainrule.cat([x, x], dim=1).shape
    ((3, 2), (2, 6))
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..autograd import graph as _graph
from ..autograd.grad_mode import STATE
from ..backend import result_type
from ..errors import GraphError, ShapeError
from ..primitives import movement as P
from ..tensor import Tensor
from ._util import cast, method, normalize_dim, size_args
from .elementwise import _t, where


def _infer_shape(shape: tuple, numel: int, op: str, old_shape) -> tuple:
    neg = [i for i, s in enumerate(shape) if s == -1]
    if len(neg) > 1:
        raise ShapeError(f"{op}: only one dimension can be -1, got shape {list(shape)}")
    if any(s < -1 for s in shape):
        raise ShapeError(f"{op}: invalid shape {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if neg:
        if known == 0 or numel % known:
            raise ShapeError(f"{op}: shape {list(shape)} is invalid for input of size {numel} "
                             f"(shape {tuple(old_shape)})")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ShapeError(f"{op}: shape {list(shape)} is invalid for input of size {numel} "
                         f"(shape {tuple(old_shape)})")
    return shape


@method
def reshape(input, *shape) -> Tensor:
    """Same data, new shape (one dimension may be -1).

    Example:
        >>> import chainrule
        >>> chainrule.reshape(chainrule.arange(6), (2, -1)).shape
        (2, 3)
    """
    x = _t(input)
    shape = _infer_shape(size_args(shape, "reshape"), x._data.size, "reshape", x.shape)
    if shape == x._data.shape:
        return x
    return P.reshape(x, shape=shape)


@method
def view(input, *shape) -> Tensor:
    """The same memory seen with a new shape, as PyTorch's ``view``: refused (ShapeError, a
    RuntimeError) where the tensor's strides do not allow it without a copy, e.g. a
    transpose flattened; ``reshape`` copies then.

    Example:
        >>> import chainrule
        >>> chainrule.arange(6).view(2, 3).shape
        (2, 3)
        >>> try:
        ...     chainrule.arange(6).view(2, 3).T.view(6)
        ... except RuntimeError as e:
        ...     print(str(e).split(";")[-1].strip())
        use .reshape(...) instead
    """
    x = _t(input)
    shape = _infer_shape(size_args(shape, "view"), x._data.size, "view", x.shape)
    if not _viewable(x._data, shape):
        strides = tuple(s // x._data.itemsize for s in x._data.strides)
        raise ShapeError(f"view: shape {list(shape)} is not compatible with the input's size "
                         f"and stride (shape {tuple(x.shape)}, strides {strides}): at least one "
                         "dimension spans two contiguous subspaces; use .reshape(...) instead")
    return reshape(x, shape)


def _viewable(a, shape) -> bool:
    """Whether array ``a`` can take ``shape`` without a copy."""
    if a.flags.c_contiguous or tuple(shape) == a.shape:
        return True
    try:
        a.reshape(shape, copy=False)  # NumPy >= 2.1
    except ValueError:
        return False
    except TypeError:  # older NumPy, CuPy: no copy= (setting the shape of a view never copies)
        v = a.view()
        try:
            v.shape = shape
        except AttributeError:
            return False
    return True


@method
def view_as(input, other) -> Tensor:
    """Reshape to ``other``'s shape.

    Example:
        >>> import chainrule
        >>> chainrule.ones(4).view_as(chainrule.ones(2, 2)).shape
        (2, 2)
    """
    return reshape(input, other.shape)


@method
def reshape_as(input, other) -> Tensor:
    """Reshape to ``other``'s shape.

    Example:
        >>> import chainrule
        >>> chainrule.ones(4).reshape_as(chainrule.ones(2, 2)).shape
        (2, 2)
    """
    return reshape(input, other.shape)


@method
def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one.

    Example:
        >>> import chainrule
        >>> chainrule.flatten(chainrule.ones(2, 3, 4), 1).shape
        (2, 12)
    """
    x = _t(input)
    if x._data.ndim == 0:
        return reshape(x, (1,))
    s = normalize_dim(start_dim, x._data.ndim, "flatten")
    e = normalize_dim(end_dim, x._data.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shp = x._data.shape
    return reshape(x, shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


@method
def unflatten(input, dim: int, sizes) -> Tensor:
    """Split dim into ``sizes``.

    Example:
        >>> import chainrule
        >>> chainrule.ones(2, 6).unflatten(1, (2, 3)).shape
        (2, 2, 3)
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "unflatten")
    shp = x._data.shape
    sizes = _infer_shape(tuple(sizes), shp[d], "unflatten", shp)
    return reshape(x, shp[:d] + sizes + shp[d + 1:])


@method
def squeeze(input, dim=None) -> Tensor:
    """Drop size-1 dims (all, or those in ``dim``; a non-1 dim is left alone, as in PyTorch).

    Example:
        >>> import chainrule
        >>> chainrule.squeeze(chainrule.ones(1, 3, 1)).shape
        (3,)
    """
    x = _t(input)
    shp = x._data.shape
    if dim is None:
        new = tuple(s for s in shp if s != 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        ds = {normalize_dim(d, x._data.ndim, "squeeze") for d in dims}
        new = tuple(s for i, s in enumerate(shp) if not (i in ds and s == 1))
    return reshape(x, new) if new != shp else x


@method
def unsqueeze(input, dim: int) -> Tensor:
    """Insert a size-1 dim at ``dim`` (in [-ndim-1, ndim]).

    Example:
        >>> import chainrule
        >>> chainrule.unsqueeze(chainrule.ones(3), 0).shape
        (1, 3)
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim + 1, "unsqueeze")
    shp = x._data.shape
    return P.reshape(x, shape=shp[:d] + (1,) + shp[d:])


@method
def permute(input, *dims) -> Tensor:
    """Reorder dimensions.

    Example:
        >>> import chainrule
        >>> chainrule.permute(chainrule.ones(2, 3, 4), (2, 0, 1)).shape
        (4, 2, 3)
    """
    x = _t(input)
    dims = size_args(dims, "permute")
    nd = x._data.ndim
    if len(dims) != nd:
        raise ShapeError(f"permute: number of dims don't match: the tensor has {nd} dims "
                         f"(shape {tuple(x.shape)}) but {len(dims)} were given ({dims})")
    axes = tuple(normalize_dim(d, nd, "permute") for d in dims)
    if len(set(axes)) != nd:
        raise ShapeError(f"permute: repeated dim in {dims}")
    if axes == tuple(range(nd)):
        return x
    return P.permute(x, axes=axes)


@method
def transpose(input, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions.

    Example:
        >>> import chainrule
        >>> chainrule.transpose(chainrule.ones(2, 3), 0, 1).shape
        (3, 2)
    """
    x = _t(input)
    nd = x._data.ndim
    if nd < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return x
    a = normalize_dim(dim0, nd, "transpose")
    b = normalize_dim(dim1, nd, "transpose")
    axes = list(range(nd))
    axes[a], axes[b] = axes[b], axes[a]
    return permute(x, axes)


swapaxes = method(transpose, "swapaxes")


@method
def t(input) -> Tensor:
    """Transpose of a 2-D tensor (1-D and 0-D unchanged).

    Example:
        >>> import chainrule
        >>> chainrule.ones(2, 3).t().shape
        (3, 2)
    """
    x = _t(input)
    if x._data.ndim > 2:
        raise ShapeError(f"t() expects a tensor with <= 2 dims, got shape {tuple(x.shape)}")
    return transpose(x, 0, 1) if x._data.ndim == 2 else x


def broadcast_shapes(*shapes) -> tuple:
    """The shape that the given shapes broadcast to, or a ShapeError naming them.

    Example:
        >>> import chainrule
        >>> chainrule.broadcast_shapes((2, 1), (3,))
        (2, 3)
    """
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError:
        raise ShapeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} cannot be broadcast "
                         "together") from None


@method
def broadcast_to(input, shape) -> Tensor:
    """Expand to ``shape`` following broadcasting rules (a view).

    Example:
        >>> import chainrule
        >>> chainrule.broadcast_to(chainrule.ones(3), (2, 3)).shape
        (2, 3)
    """
    x = _t(input)
    shape = tuple(shape)
    if shape == x._data.shape:
        return x
    try:
        out_shape = np.broadcast_shapes(x._data.shape, shape)
    except ValueError:
        out_shape = None
    if out_shape != shape:
        raise ShapeError(f"broadcast_to: a tensor of shape {tuple(x.shape)} cannot be expanded "
                         f"to {shape}")
    return P.broadcast_to(x, shape=shape)


@method
def expand(input, *sizes) -> Tensor:
    """Broadcast to ``sizes``; -1 keeps a dimension.

    Example:
        >>> import chainrule
        >>> chainrule.ones(3, 1).expand(-1, 4).shape
        (3, 4)
    """
    x = _t(input)
    sizes = size_args(sizes, "expand")
    nd = x._data.ndim
    if len(sizes) < nd:
        raise ShapeError(f"expand: the number of sizes ({len(sizes)}) must be at least the "
                         f"tensor's dims ({nd}, shape {tuple(x.shape)})")
    lead = len(sizes) - nd
    shape = tuple(x._data.shape[i - lead] if (s == -1 and i >= lead) else s
                  for i, s in enumerate(sizes))
    if any(s < 0 for s in shape):
        raise ShapeError(f"expand: -1 is not allowed for new leading dims ({sizes})")
    return broadcast_to(x, shape)


@method
def expand_as(input, other) -> Tensor:
    """Broadcast to ``other``'s shape.

    Example:
        >>> import chainrule
        >>> chainrule.ones(3).expand_as(chainrule.ones(2, 3)).shape
        (2, 3)
    """
    return broadcast_to(input, other.shape)


@method
def repeat(input, *repeats) -> Tensor:
    """Tile the tensor ``repeats[i]`` times along each dim (like numpy.tile).

    Example:
        >>> import chainrule
        >>> chainrule.tensor([1, 2]).repeat(2)
        tensor([1, 2, 1, 2])
    """
    x = _t(input)
    reps = size_args(repeats, "repeat")
    nd = x._data.ndim
    if len(reps) < nd:
        raise ShapeError(f"repeat: number of repeats ({len(reps)}) can not be smaller than the "
                         f"number of dims ({nd})")
    shp = (1,) * (len(reps) - nd) + x._data.shape
    x = reshape(x, shp)
    inter = []
    big = []
    for r, s in zip(reps, shp):
        inter += [1, s]
        big += [r, s]
    x = reshape(x, tuple(inter))
    x = broadcast_to(x, tuple(big))
    return reshape(x, tuple(r * s for r, s in zip(reps, shp)))


def _same_device_dtype(tensors, op):
    devs = {str(t.device) for t in tensors}
    if len(devs) > 1:
        from ..errors import DeviceError  # noqa: PLC0415

        raise DeviceError(f"{op}: tensors are on different devices: {sorted(devs)}")
    dts = {t._data.dtype for t in tensors}
    if len(dts) > 1:
        rt = result_type(*[(t.dtype, t._data.ndim) for t in tensors])
        tensors = [cast(t, rt) for t in tensors]
    return tensors


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (shapes must match elsewhere).

    Example:
        >>> import chainrule
        >>> chainrule.cat([chainrule.ones(2), chainrule.zeros(1)])
        tensor([1., 1., 0.])
    """
    tensors = [_t(x) for x in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    # PyTorch skips 1-D empty tensors in cat
    tensors = [x for x in tensors if not (x._data.ndim == 1 and x._data.size == 0)] or tensors[:1]
    nd = tensors[0]._data.ndim
    if nd == 0:
        raise ShapeError("cat: zero-dimensional tensors cannot be concatenated")
    d = normalize_dim(dim, nd, "cat")
    ref = tensors[0]._data.shape
    for i, x in enumerate(tensors):
        s = x._data.shape
        if len(s) != nd or any(a != b for j, (a, b) in enumerate(zip(s, ref)) if j != d):
            raise ShapeError(f"cat: sizes of tensors must match except in dimension {d}: tensor "
                             f"0 has shape {tuple(ref)} but tensor {i} has shape {tuple(s)}")
    tensors = _same_device_dtype(tensors, "cat")
    if len(tensors) == 1:
        return tensors[0]
    return P.concatenate(*tensors, axis=d)


concat = cat
concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim.

    Example:
        >>> import chainrule
        >>> chainrule.stack([chainrule.ones(2), chainrule.zeros(2)]).shape
        (2, 2)
    """
    tensors = [_t(x) for x in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    ref = tensors[0]._data.shape
    for i, x in enumerate(tensors):
        if x._data.shape != ref:
            raise ShapeError(f"stack: expects each tensor to be equal size, but got {tuple(ref)} "
                             f"at entry 0 and {tuple(x.shape)} at entry {i}")
    d = normalize_dim(dim, len(ref) + 1, "stack")
    tensors = _same_device_dtype(tensors, "stack")
    ex = [P.reshape(x, shape=ref[:d] + (1,) + ref[d:]) for x in tensors]
    if len(ex) == 1:
        return ex[0]
    return P.concatenate(*ex, axis=d)


def hstack(tensors) -> Tensor:
    """cat along dim 1 (dim 0 for 1-D tensors).

    Example:
        >>> import chainrule
        >>> chainrule.hstack([chainrule.ones(2), chainrule.ones(1)]).shape
        (3,)
    """
    tensors = [_t(x) for x in tensors]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    """Stack rows (1-D tensors become rows).

    Example:
        >>> import chainrule
        >>> chainrule.vstack([chainrule.ones(2), chainrule.ones(2)]).shape
        (2, 2)
    """
    tensors = [_t(x) for x in tensors]
    return cat([x.reshape(1, -1) if x.ndim == 1 else x for x in tensors], 0)


@method
def split(tensor, split_size_or_sections, dim: int = 0):
    """Split into chunks of a given size (the last may be smaller) or of listed sizes.

    Example:
        >>> import chainrule
        >>> [p.shape for p in chainrule.split(chainrule.arange(5), 2)]
        [(2,), (2,), (1,)]
    """
    x = _t(tensor)
    d = normalize_dim(dim, x._data.ndim, "split")
    n = x._data.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        if n == 0:
            sizes = [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise ShapeError(f"split: sections {sizes} sum to {sum(sizes)}, but dimension {d} "
                             f"has size {n} (shape {tuple(x.shape)})")
    out = []
    start = 0
    pre = (slice(None),) * d
    for s in sizes:
        out.append(P.getitem(x, index=pre + (slice(start, start + s),)))
        start += s
    return tuple(out)


@method
def chunk(input, chunks: int, dim: int = 0):
    """Split into ``chunks`` pieces of size ceil(n / chunks) (fewer if n is small).

    Example:
        >>> import chainrule
        >>> len(chainrule.chunk(chainrule.arange(6), 3))
        3
    """
    x = _t(input)
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = normalize_dim(dim, x._data.ndim, "chunk")
    n = x._data.shape[d]
    size = max(-(-n // chunks), 1)
    return split(x, size, d)


@method
def unbind(input, dim: int = 0):
    """All slices along ``dim``, with that dim removed.

    Example:
        >>> import chainrule
        >>> [t.shape for t in chainrule.unbind(chainrule.ones(2, 3))]
        [(3,), (3,)]
    """
    x = _t(input)
    d = normalize_dim(dim, x._data.ndim, "unbind")
    pre = (slice(None),) * d
    return tuple(P.getitem(x, index=pre + (i,)) for i in range(x._data.shape[d]))


@method
def flip(input, dims) -> Tensor:
    """Reverse the order along ``dims``.

    Example:
        >>> import chainrule
        >>> chainrule.flip(chainrule.tensor([1, 2, 3]), [0])
        tensor([3, 2, 1])
    """
    x = _t(input)
    dims = dims if isinstance(dims, (list, tuple)) else (dims,)
    axes = tuple(sorted({normalize_dim(d, x._data.ndim, "flip") for d in dims}))
    return P.flip(x, axes=axes) if axes else x


def _index_array(index: Tensor, op: str, integer=True):
    if not isinstance(index, Tensor):
        index = _t(index)
    if integer and index._data.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got {index.dtype.name}")
    return index._data


@method
def gather(input, dim: int, index) -> Tensor:
    """out[i][j] = input[i][index[i][j]] for dim=1 (PyTorch's gather).

    Example:
        >>> import chainrule
        >>> x = chainrule.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> chainrule.gather(x, 1, chainrule.tensor([[1], [0]]))
        tensor([[2.],
                [3.]])
    """
    x = _t(input)
    idx = _index_array(index, "gather")
    nd = x._data.ndim
    d = normalize_dim(dim, nd, "gather")
    if idx.ndim != nd:
        raise ShapeError(f"gather: index has {idx.ndim} dims (shape {tuple(idx.shape)}) but "
                         f"input has {nd} (shape {tuple(x.shape)})")
    for i, (a, b) in enumerate(zip(idx.shape, x._data.shape)):
        if i != d and a > b:
            raise ShapeError(f"gather: index shape {tuple(idx.shape)} is larger than input shape "
                             f"{tuple(x.shape)} in dimension {i}")
    if idx.size and (idx.min() < -x._data.shape[d] or idx.max() >= x._data.shape[d]):
        raise IndexError(f"gather: index out of range for dimension {d} of size "
                         f"{x._data.shape[d]}")
    if any(a != b for i, (a, b) in enumerate(zip(idx.shape, x._data.shape)) if i != d):
        x = P.getitem(x, index=tuple(slice(0, n) if i != d else slice(None)
                                     for i, n in enumerate(idx.shape)))
    return P.gather(x, index if isinstance(index, Tensor) else _wrap(idx), axis=d)


@method
def take_along_dim(input, indices, dim: int) -> Tensor:
    """NumPy's take_along_axis (same shapes except ``dim``).

    Example:
        >>> import chainrule
        >>> chainrule.take_along_dim(chainrule.tensor([[5, 6]]), chainrule.tensor([[1]]), 1)
        tensor([[6]])
    """
    return gather(input, dim, indices)


@method
def index_select(input, dim: int, index) -> Tensor:
    """Select entries ``index`` (1-D integer tensor) along ``dim``.

    Example:
        >>> import chainrule
        >>> chainrule.index_select(chainrule.tensor([10, 20, 30]), 0, chainrule.tensor([2, 0]))
        tensor([30, 10])
    """
    x = _t(input)
    idx = _index_array(index, "index_select")
    if idx.ndim > 1:
        raise ShapeError(f"index_select: index must be 1-D, got shape {tuple(idx.shape)}")
    d = normalize_dim(dim, x._data.ndim, "index_select")
    return getitem(x, (slice(None),) * d + (_wrap(idx.reshape(-1)),))


def _wrap(a):
    from ..tensor import _wrap as w  # noqa: PLC0415

    return w(a)


@method
def masked_fill(input, mask, value) -> Tensor:
    """Replace elements where ``mask`` (bool, broadcastable) is true by ``value``.

    Example:
        >>> import chainrule
        >>> chainrule.masked_fill(chainrule.ones(3), chainrule.tensor([True, False, True]), 0.0)
        tensor([0., 1., 0.])
    """
    x = _t(input)
    mask = _t(mask)
    if mask._data.dtype.kind != "b":
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype.name}")
    broadcast_shapes(x.shape, mask.shape)
    if np.broadcast_shapes(x.shape, mask.shape) != x.shape:
        raise ShapeError(f"masked_fill: mask of shape {tuple(mask.shape)} does not broadcast to "
                         f"input shape {tuple(x.shape)}")
    if isinstance(value, Tensor):
        value = cast(value, x.dtype)
    else:
        value = value.item() if hasattr(value, "item") else value
        if x._data.dtype.kind in "iub" and isinstance(value, float) and not value.is_integer():
            raise TypeError(f"masked_fill: cannot fill a {x.dtype.name} tensor with {value}")
        kind = type(x._data.dtype.type(0).item())
        value = (kind if kind in (bool, int, float) else float)(value)  # bfloat16: float
    return where(mask, value, x)


def _tri_mask(x: Tensor, diagonal: int, lower: bool):
    if x._data.ndim < 2:
        raise ShapeError(f"{'tril' if lower else 'triu'}: input must have at least 2 dims, got "
                         f"shape {tuple(x.shape)}")
    n, m = x._data.shape[-2:]
    xp = backend.get_array_module(x._data)
    tri = xp.tri(n, m, k=diagonal, dtype=bool)
    return _wrap(tri if lower else ~xp.tri(n, m, k=diagonal - 1, dtype=bool))


@method
def tril(input, diagonal: int = 0) -> Tensor:
    """Lower triangle (elements above ``diagonal`` set to 0).

    Example:
        >>> import chainrule
        >>> chainrule.tril(chainrule.ones(2, 2))
        tensor([[1., 0.],
                [1., 1.]])
    """
    x = _t(input)
    return where(_tri_mask(x, diagonal, True), x, False if x._data.dtype.kind == "b" else 0)


@method
def triu(input, diagonal: int = 0) -> Tensor:
    """Upper triangle (elements below ``diagonal`` set to 0).

    Example:
        >>> import chainrule
        >>> chainrule.triu(chainrule.ones(2, 2))
        tensor([[1., 1.],
                [0., 1.]])
    """
    x = _t(input)
    return where(_tri_mask(x, diagonal, False), x, False if x._data.dtype.kind == "b" else 0)


def pad(input, pad, mode: str = "constant", value=0.0) -> Tensor:
    """Pad with a constant; ``pad`` lists (left, right) pairs from the LAST dim backwards,
    as in PyTorch: ``pad(x, (1, 1))`` pads the last dim by one on each side.

    Example:
        >>> import chainrule
        >>> chainrule.nn.functional.pad(chainrule.ones(2), (1, 2))
        tensor([0., 1., 1., 0., 0.])
    """
    x = _t(input)
    if mode != "constant":
        raise ValueError(f"pad: mode {mode!r} is not supported (only 'constant')")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x._data.ndim:
        raise ShapeError(f"pad: padding {pad} must have an even length of at most 2 * ndim "
                         f"({2 * x._data.ndim} for shape {tuple(x.shape)})")
    nd = x._data.ndim
    widths = [[0, 0] for _ in range(nd)]
    for k in range(len(pad) // 2):
        widths[nd - 1 - k] = [pad[2 * k], pad[2 * k + 1]]
    # negative padding crops
    crop = []
    for n, w in zip(x._data.shape, widths):
        lo, hi = w
        crop.append(slice(-lo if lo < 0 else 0, n + hi if hi < 0 else n))
        w[0], w[1] = max(lo, 0), max(hi, 0)
    if any(c.start or c.stop != n for c, n in zip(crop, x._data.shape)):
        x = P.getitem(x, index=tuple(crop))
    if not any(lo or hi for lo, hi in widths):
        return x
    return P.pad(x, widths=tuple(tuple(w) for w in widths), value=value)


# ---------------------------------------------------------------- indexing
def _normalize_index(x: Tensor, index, op: str = "getitem") -> tuple[tuple, list]:
    """``(template, arrays)``: the index template of getitem/index_put (ints, slices, None,
    Ellipsis, Python bools, and :class:`~chainrule.primitives.movement.IndexArg` places)
    and its integer index arrays or tensors, the primitive's index inputs. A bool mask
    becomes the integer arrays of its nonzero places, computed eagerly (a mask's result
    shape depends on its values: under chainrule.jit it is a host read)."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    arrays = []
    used = []  # dims of x that each index element consumes
    masks = {}  # position in index -> shape of a bool mask
    for i in index:
        n = 1
        if isinstance(i, slice) or i is None or i is Ellipsis:  # basic indexing first
            out.append(i)
            n = 1 if isinstance(i, slice) else 0
            used.append(n)
            continue
        if type(i) is int:
            out.append(i)
            used.append(1)
            continue
        if isinstance(i, range):  # PyTorch indexes with a range as with the list it holds
            i = list(i)
        if isinstance(i, Tensor):
            a = i._data
            if type(a) is not type(x._data):
                raise IndexError(f"{op}: index tensor is on {i.device} but the tensor is on "
                                 f"{x.device}")
            if a.dtype.kind == "b":  # a mask: its nonzero places, read eagerly
                n = _mask_places(a, out, arrays)
                masks[len(used)] = a.shape
            elif a.dtype.kind in "iu":
                out.append(P.IndexArg(len(arrays)))
                arrays.append(i)  # the tensor itself: vmap and the jit see it as an input
            else:
                raise IndexError(f"{op}: tensors used as indices must be long, int or bool, "
                                 f"got {i.dtype.name} (index of shape {tuple(a.shape)}, "
                                 f"tensor of shape {tuple(x.shape)})")
        elif isinstance(i, (list, np.ndarray)) or backend.is_array(i):
            a = backend.get_array_module(x._data).asarray(i)
            if a.dtype.kind == "b":
                n = _mask_places(a, out, arrays)
                masks[len(used)] = a.shape
            elif a.dtype.kind in "iu" or a.size == 0:
                out.append(P.IndexArg(len(arrays)))
                arrays.append(_wrap(a.astype(np.int64) if a.size == 0 else a))
            else:
                raise IndexError(f"{op}: list/array indices must be integers or bools, got "
                                 f"{a.dtype} (index of shape {tuple(a.shape)}, tensor of shape "
                                 f"{tuple(x.shape)})")
        elif isinstance(i, (bool, np.bool_)):
            out.append(bool(i))
            n = 0
        elif isinstance(i, numbers.Integral):
            out.append(int(i))
        else:
            raise IndexError(f"{op}: unsupported index {i!r} of type {type(i).__name__}")
        used.append(n)
    if masks:  # as integer indices, a mask of the wrong shape would pass unnoticed
        shape = x._data.shape
        pos = 0
        for k, (i, n) in enumerate(zip(index, used)):
            if k in masks and tuple(masks[k]) != tuple(shape[pos:pos + n]):
                raise IndexError(f"{op}: the shape of the mask {tuple(masks[k])} does not "
                                 f"match dims {pos}..{pos + n - 1} of the indexed tensor of "
                                 f"shape {tuple(shape)}")
            pos += len(shape) - sum(used) if i is Ellipsis else n
    return tuple(out), arrays


def _mask_places(a, out: list, arrays: list) -> int:
    """Put the places of the True entries of mask ``a`` (a 0-d mask: a Python bool) into
    the template ``out`` and ``arrays``; returns the dims of x that the mask consumes."""
    if not a.ndim:
        out.append(bool(a))
        return 0
    for places in backend.get_array_module(a).nonzero(a):
        out.append(P.IndexArg(len(arrays)))
        arrays.append(_wrap(places))
    return a.ndim


def getitem(input, index) -> Tensor:
    """``x[index]`` with ints, slices, None, Ellipsis, integer and bool index tensors/arrays.
    Integer index arrays are inputs of the getitem primitive (the ``index=`` param keeps
    the rest); a bool mask is read eagerly into the integer arrays of its True places.

    Example:
        >>> import chainrule
        >>> x = chainrule.arange(6).reshape(2, 3)
        >>> x[:, chainrule.tensor([2, 0])]
        tensor([[2, 0],
                [5, 3]])
    """
    x = _t(input)
    template, arrays = _normalize_index(x, index)
    return P.getitem(x, *arrays, index=template)


def setitem(input: Tensor, index, value) -> None:
    """``x[index] = value`` (in place; recorded for autograd when needed)."""
    x = input
    template, arrays = _normalize_index(x, index, "setitem")
    idx = P.fill_index(template, [getattr(a, "_data", a) for a in arrays]) if arrays else template
    if isinstance(value, Tensor):
        if value.device != x.device:
            from ..errors import DeviceError  # noqa: PLC0415

            raise DeviceError(f"setitem: value is on {value.device}, the tensor on {x.device}")
        if value._data.dtype != x._data.dtype:
            if value.dtype.category > x.dtype.category:
                raise TypeError(f"setitem: cannot assign a {value.dtype.name} value into a "
                                f"{x.dtype.name} tensor")
            value = cast(value, x.dtype)
    recording = STATE.enabled and (x._rg or (isinstance(value, Tensor) and value._rg))
    try:
        target_shape = x._data[idx].shape
    except (IndexError, ValueError, TypeError) as e:
        raise IndexError(f"setitem: {e} (tensor shape {tuple(x.shape)})") from None
    vshape = value.shape if isinstance(value, Tensor) else np.shape(value)
    try:
        np.broadcast_shapes(tuple(vshape), target_shape)
        if len(vshape) > len(target_shape) and any(s != 1 for s in vshape[:len(vshape) -
                                                                           len(target_shape)]):
            raise ValueError
    except ValueError:
        raise ShapeError(f"setitem: value of shape {tuple(vshape)} cannot be assigned to an "
                         f"indexed region of shape {tuple(target_shape)}") from None
    if recording or _graph.FORWARD.levels:  # under vmap/jvp the index or value may be batched
        if recording and x._node is None and x._rg:
            raise GraphError(f"setitem: a leaf tensor that requires grad (shape "
                             f"{tuple(x.shape)}) cannot be changed in place while grad mode is "
                             "on; wrap it in chainrule.no_grad() or build a new tensor")
        if not isinstance(value, Tensor):
            value = _t(value)
            value = cast(value, x.dtype)
        if len(value.shape) > len(target_shape):
            value = reshape(value, value.shape[len(value.shape) - len(target_shape):])
        x._inplace(P.index_put(x, value, *arrays, index=template), "setitem")
        return
    v = value._data if isinstance(value, Tensor) else value
    if isinstance(v, Tensor):
        v = v._data
    if len(np.shape(v)) > len(target_shape):
        v = np.reshape(v, np.shape(v)[len(np.shape(v)) - len(target_shape):]) \
            if not hasattr(v, "reshape") else v.reshape(np.shape(v)[len(np.shape(v)) -
                                                                    len(target_shape):])
    if x._data.dtype.kind in "iub" and isinstance(v, float) and not float(v).is_integer():
        raise TypeError(f"setitem: cannot assign {v} to a {x.dtype.name} tensor")
    x._check_writable("setitem")
    x._data[idx] = v
    x._bump()
