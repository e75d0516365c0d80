"""Convolution and pooling (PyTorch's ``torch.nn.functional`` names, signatures, defaults and
numerics); resizing (``interpolate``, ``upsample_nearest``) is in :mod:`chainrule.ops.resize`
and importable from here too.

Built on the primitives of :mod:`chainrule.primitives.conv` (im2col over strided views and
BLAS products; each op's derivatives are ops of the same family, so grad-of-grad works) and,
for adaptive pooling, on matmul / indexing / broadcasting primitives.

Example:
    >>> import chainrule
    >>> from chainrule.ops.conv import conv2d, max_pool2d
    >>> x = chainrule.ones(1, 1, 4, 4)
    >>> y = max_pool2d(conv2d(x, chainrule.ones(2, 1, 3, 3), padding=1), 2)
    >>> y.shape, y[0, 0].tolist()
    ((1, 2, 2, 2), [[9.0, 9.0], [9.0, 9.0]])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from .. import backend
from ..errors import ShapeError
from ..primitives import conv as PC
from ..primitives import elementwise as PE
from ..primitives import movement as PM
from ..tensor import Tensor, _wrap
from . import reduce as R
from ._amp import autocast_fp32, autocast_lower
from ._util import _ntuple
from .elementwise import _t
from .linalg import matmul as _matmul
from .resize import interpolate, upsample_nearest
from .shape import getitem, stack

matmul = _matmul.__wrapped__  # pooling's products follow the input dtype, not autocast

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "interpolate", "max_pool1d", "max_pool2d",
    "max_pool3d", "upsample_nearest",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",  # issue 14
]

_IntOrTuple = int | Sequence[int]


# ---------------------------------------------------------------- argument helpers
def _as_batched(x: Tensor, nd: int, op: str, what: str = "input"):
    """(tensor with a batch dim, whether one was added); 'unbatched' (C, *spatial) inputs
    get a batch dim of 1 as in PyTorch."""
    if x.ndim == nd + 2:
        return x, False
    if x.ndim == nd + 1:
        return PM.reshape(x, shape=(1,) + tuple(x.shape)), True
    spatial = "".join(f", d{i}" for i in range(nd))
    raise ShapeError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) {what} "
                     f"of shape (N, C{spatial}), got shape {tuple(x.shape)}")


def _unbatch(y: Tensor, added: bool) -> Tensor:
    return PM.reshape(y, shape=tuple(y.shape[1:])) if added else y


def _check_float(op: str, **tensors):
    dt = None
    for name, t in tensors.items():
        if t is None:
            continue
        if t._data.dtype.kind not in "fV":
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype.name}")
        if dt is None:
            dt = t
        elif t._data.dtype != dt._data.dtype:
            raise TypeError(f"{op}: input and {name} must have the same dtype, got "
                            f"{dt.dtype.name} and {t.dtype.name}")


def _check_bias(bias, c: int, x: Tensor, op: str):
    if bias is None:
        return None
    b = _t(bias)
    if tuple(b.shape) != (c,):
        raise ShapeError(f"{op}: bias must have shape ({c},) (one per output channel), got "
                         f"{tuple(b.shape)}")
    _check_float(op, input=x, bias=b)
    return b


# ---------------------------------------------------------------- convolution
def _conv_padding(padding, kernel, dilation, stride, nd: int, op: str):
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))  # the odd one on the right
            return tuple(pads)
        raise ValueError(f"{op}: padding must be 'same', 'valid', an int or a tuple of "
                         f"{nd} ints, got {padding!r}")
    p = _ntuple(padding, nd, "padding", op, 0)
    return tuple((v, v) for v in p)


def _convnd(op, nd, input, weight, bias, stride, padding, dilation, groups):
    x, added = _as_batched(_t(input), nd, op)
    w = _t(weight)
    _check_float(op, input=x, weight=w)
    if w.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-D (out_channels, in_channels / groups"
                         f"{', k' * nd}), got shape {tuple(w.shape)}")
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    o, cg = w.shape[:2]
    kernel = tuple(w.shape[2:])
    c = x.shape[1]
    if o % groups:
        raise ShapeError(f"{op}: given groups={groups}, expected weight of shape "
                         f"{tuple(w.shape)} to be divisible by {groups} at dimension 0 "
                         f"(out_channels)")
    if c != cg * groups:
        raise ShapeError(f"{op}: given groups={groups}, weight of shape {tuple(w.shape)} expects "
                         f"input of shape {tuple(x.shape)} to have {cg * groups} channels, but "
                         f"it has {c}")
    stride = _ntuple(stride, nd, "stride", op, 1)
    dilation = _ntuple(dilation, nd, "dilation", op, 1)
    pads = _conv_padding(padding, kernel, dilation, stride, nd, op)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pads))
    if any(p < d * (k - 1) + 1 for p, k, d in zip(padded, kernel, dilation)):
        raise ShapeError(f"{op}: padded input size per channel {padded} is smaller than the "
                         f"(dilated) kernel size "
                         f"{tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))}; input "
                         f"shape {tuple(x.shape)}, weight shape {tuple(w.shape)}")
    b = _check_bias(bias, w.shape[0], x, op)
    y = PC.conv(x, w, b, stride=stride, padding=pads, dilation=dilation, groups=groups)
    return _unbatch(y, added)


@autocast_lower
def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
           stride: _IntOrTuple = 1, padding: _IntOrTuple | str = 0,
           dilation: _IntOrTuple = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation of ``input`` (N, C_in, L) with ``weight`` (C_out, C_in/groups, k):
    ``out[n, o, l] = bias[o] + sum_{c, i} weight[o, c, i] * input[n, c, l * stride + i *
    dilation - padding]``. ``padding`` may be an int, 'valid' (0) or 'same' (stride 1 only).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import conv1d
        >>> conv1d(chainrule.tensor([[[1.0, 2.0, 3.0]]]), chainrule.ones(1, 1, 2))
        tensor([[[3., 5.]]])
    """
    return _convnd("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


@autocast_lower
def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
           stride: _IntOrTuple = 1, padding: _IntOrTuple | str = 0,
           dilation: _IntOrTuple = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation of ``input`` (N, C_in, H, W) with ``weight``
    (C_out, C_in/groups, kH, kW), plus ``bias`` (C_out,). ``stride``, ``padding`` and
    ``dilation`` are ints or pairs; ``padding`` may also be 'valid' or 'same' (stride 1; an
    odd total padding puts the extra row/column at the end, as PyTorch). Output size per dim:
    ``(n + 2 * padding - dilation * (k - 1) - 1) // stride + 1``.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import conv2d
        >>> x = chainrule.arange(9.0).reshape(1, 1, 3, 3)
        >>> conv2d(x, chainrule.ones(1, 1, 2, 2))
        tensor([[[[ 8., 12.],
                  [20., 24.]]]])
    """
    return _convnd("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


@autocast_lower
def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
           stride: _IntOrTuple = 1, padding: _IntOrTuple | str = 0,
           dilation: _IntOrTuple = 1, groups: int = 1) -> Tensor:
    """3-D cross-correlation of ``input`` (N, C_in, D, H, W) with ``weight``
    (C_out, C_in/groups, kD, kH, kW); arguments as :func:`conv2d`, with triples.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import conv3d
        >>> conv3d(chainrule.ones(1, 1, 3, 3, 3), chainrule.ones(1, 1, 2, 2, 2)).shape
        (1, 1, 2, 2, 2)
    """
    return _convnd("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def _conv_transposend(op, nd, input, weight, bias, stride, padding, output_padding,
                      groups, dilation):
    x, added = _as_batched(_t(input), nd, op)
    w = _t(weight)
    _check_float(op, input=x, weight=w)
    if w.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be {nd + 2}-D (in_channels, out_channels / groups"
                         f"{', k' * nd}), got shape {tuple(w.shape)}")
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of {nd} ints (no 'same' or "
                         f"'valid' for transposed convolutions), got {padding!r}")
    c = x.shape[1]
    if w.shape[0] != c:
        raise ShapeError(f"{op}: weight of shape {tuple(w.shape)} expects input of shape "
                         f"{tuple(x.shape)} to have {w.shape[0]} channels, but it has {c}")
    if c % groups:
        raise ShapeError(f"{op}: given groups={groups}, in_channels {c} (weight dimension 0) "
                         f"is not divisible by groups")
    kernel = tuple(w.shape[2:])
    stride = _ntuple(stride, nd, "stride", op, 1)
    dilation = _ntuple(dilation, nd, "dilation", op, 1)
    pad = _ntuple(padding, nd, "padding", op, 0)
    opad = _ntuple(output_padding, nd, "output_padding", op, 0)
    if any(p >= s and p >= d for p, s, d in zip(opad, stride, dilation)):
        raise ValueError(f"{op}: output_padding must be smaller than either stride or "
                         f"dilation, got output_padding={opad}, stride={stride}, "
                         f"dilation={dilation}")
    size = tuple((n - 1) * s - 2 * p + d * (k - 1) + q + 1 for n, s, p, d, k, q in
                 zip(x.shape[2:], stride, pad, dilation, kernel, opad))
    if any(n < 1 for n in size):
        raise ShapeError(f"{op}: output size {size} is too small (input shape "
                         f"{tuple(x.shape)}, weight shape {tuple(w.shape)}, padding {pad})")
    b = _check_bias(bias, w.shape[1] * groups, x, op)
    y = PC.conv_transpose(x, w, b, stride=stride, padding=tuple((p, p) for p in pad),
                          dilation=dilation, groups=groups, size=size)
    return _unbatch(y, added)


@autocast_lower
def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: _IntOrTuple = 1, padding: _IntOrTuple = 0,
                     output_padding: _IntOrTuple = 0, groups: int = 1,
                     dilation: _IntOrTuple = 1) -> Tensor:
    """1-D transposed convolution (the gradient of :func:`conv1d` with respect to its input)
    of ``input`` (N, C_in, L) with ``weight`` (C_in, C_out/groups, k). Output length:
    ``(L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import conv_transpose1d
        >>> conv_transpose1d(chainrule.tensor([[[1.0, 2.0]]]), chainrule.ones(1, 1, 2))
        tensor([[[1., 3., 2.]]])
    """
    return _conv_transposend("conv_transpose1d", 1, input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


@autocast_lower
def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: _IntOrTuple = 1, padding: _IntOrTuple = 0,
                     output_padding: _IntOrTuple = 0, groups: int = 1,
                     dilation: _IntOrTuple = 1) -> Tensor:
    """2-D transposed convolution ("deconvolution", the gradient of :func:`conv2d` with
    respect to its input) of ``input`` (N, C_in, H, W) with ``weight``
    (C_in, C_out/groups, kH, kW). Output size per dim:
    ``(n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import conv_transpose2d
        >>> conv_transpose2d(chainrule.ones(1, 1, 2, 2), chainrule.ones(1, 1, 2, 2), stride=2)
        tensor([[[[1., 1., 1., 1.],
                  [1., 1., 1., 1.],
                  [1., 1., 1., 1.],
                  [1., 1., 1., 1.]]]])
    """
    return _conv_transposend("conv_transpose2d", 2, input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


@autocast_lower
def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride: _IntOrTuple = 1, padding: _IntOrTuple = 0,
                     output_padding: _IntOrTuple = 0, groups: int = 1,
                     dilation: _IntOrTuple = 1) -> Tensor:
    """3-D transposed convolution of ``input`` (N, C_in, D, H, W) with ``weight``
    (C_in, C_out/groups, kD, kH, kW); arguments as :func:`conv_transpose2d`, with triples.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import conv_transpose3d
        >>> conv_transpose3d(chainrule.ones(1, 1, 2, 2, 2), chainrule.ones(1, 1, 2, 2, 2),
        ...                  stride=2).shape
        (1, 1, 4, 4, 4)
    """
    return _conv_transposend("conv_transpose3d", 3, input, weight, bias, stride, padding,
                             output_padding, groups, dilation)


# ---------------------------------------------------------------- pooling
def _pool_geometry(op, x, nd, kernel_size, stride, padding, dilation, ceil_mode, max_pool):
    """(kernel, stride, (lo, hi) padding pairs, dilation, out size, input crop or None).

    ceil_mode is expressed as extra padding at the end (PyTorch's rule: the last window must
    start inside the input or its left padding)."""
    kernel = _ntuple(kernel_size, nd, "kernel_size", op, 1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    stride = _ntuple(stride, nd, "stride", op, 1)
    pad = _ntuple(padding, nd, "padding", op, 0)
    dilation = _ntuple(dilation, nd, "dilation", op, 1)
    for k, p, d in zip(kernel, pad, dilation):
        limit = ((k - 1) * d + 1) // 2 if max_pool else k // 2
        if p > limit:
            raise ValueError(f"{op}: padding should be at most half of the "
                             f"{'effective ' if max_pool else ''}kernel size, got "
                             f"padding={pad}, kernel_size={kernel}"
                             f"{f', dilation={dilation}' if max_pool else ''}")
    size = tuple(x.shape[2:])
    out, pairs, crop = [], [], []
    for n, k, s, p, d in zip(size, kernel, stride, pad, dilation):
        ext = d * (k - 1) + 1
        if ceil_mode:
            o = -(-(n + 2 * p - ext) // s) + 1
            if (o - 1) * s >= n + p:
                o -= 1
        else:
            o = (n + 2 * p - ext) // s + 1
        if o < 1:
            raise ShapeError(f"{op}: input of shape {tuple(x.shape)} is too small for "
                             f"kernel_size={kernel}, stride={stride}, padding={pad}, "
                             f"dilation={dilation}: the output size would be {o}")
        hi = (o - 1) * s + ext - n - p if ceil_mode else p
        crop.append(n + min(hi, 0))
        pairs.append((p, max(hi, 0)))
        out.append(o)
    crop_index = None
    if any(c != n for c, n in zip(crop, size)):
        crop_index = (slice(None), slice(None)) + tuple(slice(0, c) for c in crop)
    return kernel, stride, tuple(pairs), dilation, tuple(out), crop_index


def _max_poolnd(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
                return_indices):
    x, added = _as_batched(_t(input), nd, op)
    _check_float(op, input=x)
    kernel, stride, pairs, dilation, _, crop = _pool_geometry(
        op, x, nd, kernel_size, stride, padding, dilation, ceil_mode, True)
    xin = PM.getitem(x, index=crop) if crop is not None else x
    geo = dict(kernel=kernel, stride=stride, padding=pairs, dilation=dilation)
    yb = PC.max_pool(xin, **geo)
    y = _unbatch(yb, added)
    if not return_indices:
        return y
    # flat index into the input's spatial plane, as PyTorch returns it
    idx = PC.max_pool_index(xin, yb, **geo)._data.astype(np.int64)
    xp = backend.get_array_module(idx)
    flat = 0
    rem = idx
    coords = []
    for k in reversed(kernel):
        coords.append(rem % k)
        rem = rem // k
    coords.reverse()
    for d in range(nd):
        shape = [1] * idx.ndim
        shape[2 + d] = idx.shape[2 + d]
        start = (xp.arange(idx.shape[2 + d]) * stride[d] - pairs[d][0]).reshape(shape)
        pos = start + coords[d] * dilation[d]
        flat = flat * x.shape[2 + d] + pos
    ind = _wrap(flat.astype(xp.int64))
    return y, _unbatch(ind, added)


def max_pool1d(input: Tensor, kernel_size: _IntOrTuple,
               stride: _IntOrTuple | None = None, padding: _IntOrTuple = 0,
               dilation: _IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """1-D max pooling over (N, C, L) or (C, L); ``stride`` defaults to ``kernel_size``;
    ``padding`` (at most half the effective kernel) is -inf. With ``return_indices`` also
    returns the int64 position of each maximum in L (the first one on ties).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import max_pool1d
        >>> max_pool1d(chainrule.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
        tensor([[[3., 2.]]])
    """
    return _max_poolnd("max_pool1d", 1, input, kernel_size, stride, padding, dilation,
                       ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size: _IntOrTuple,
               stride: _IntOrTuple | None = None, padding: _IntOrTuple = 0,
               dilation: _IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """2-D max pooling over (N, C, H, W) or (C, H, W). ``stride`` defaults to
    ``kernel_size``; ``padding`` is -inf and at most half the effective kernel; ``ceil_mode``
    rounds the output size up (windows must start inside the input or its left padding).
    The gradient goes to the first maximum of each window. With ``return_indices`` also
    returns the int64 flat index (h * W + w) of each maximum.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import max_pool2d
        >>> max_pool2d(chainrule.arange(16.0).reshape(1, 1, 4, 4), 2)
        tensor([[[[ 5.,  7.],
                  [13., 15.]]]])
    """
    return _max_poolnd("max_pool2d", 2, input, kernel_size, stride, padding, dilation,
                       ceil_mode, return_indices)


@autocast_fp32
def max_pool3d(input: Tensor, kernel_size: _IntOrTuple,
               stride: _IntOrTuple | None = None, padding: _IntOrTuple = 0,
               dilation: _IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False):
    """3-D max pooling over (N, C, D, H, W) or (C, D, H, W); arguments as
    :func:`max_pool2d`, with triples (indices are flat in D * H * W).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import max_pool3d
        >>> max_pool3d(chainrule.arange(8.0).reshape(1, 1, 2, 2, 2), 2).flatten().tolist()
        [7.0]
    """
    return _max_poolnd("max_pool3d", 3, input, kernel_size, stride, padding, dilation,
                       ceil_mode, return_indices)


def _pool_counts(n, k, s, p, o, include_pad):
    """Per output position along one dim: the number of elements PyTorch divides by."""
    start = np.arange(o) * s - p
    end = np.minimum(start + k, n + p)
    if include_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


def _avg_poolnd(op, nd, input, kernel_size, stride, padding, ceil_mode,
                count_include_pad, divisor_override):
    x, added = _as_batched(_t(input), nd, op)
    _check_float(op, input=x)
    kernel, stride, pairs, dilation, out, crop = _pool_geometry(
        op, x, nd, kernel_size, stride, padding, 1, ceil_mode, False)
    xin = PM.getitem(x, index=crop) if crop is not None else x
    geo = dict(kernel=kernel, stride=stride, padding=pairs, dilation=dilation)
    if divisor_override is not None:
        if not isinstance(divisor_override, numbers.Integral) or divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be a non-zero int, got "
                             f"{divisor_override!r}")
        return _unbatch(PC.window_sum(xin, scale=1.0 / divisor_override, **geo), added)
    div = np.ones((), dtype=np.float64)
    for d in range(nd):
        c = _pool_counts(x.shape[2 + d], kernel[d], stride[d], pairs[d][0], out[d],
                         count_include_pad)
        div = np.multiply.outer(div, c)
    if np.all(div == div.flat[0]):  # the common case: one divisor for every window
        return _unbatch(PC.window_sum(xin, scale=1.0 / float(div.flat[0]), **geo), added)
    xp = backend.get_array_module(x._data)
    inv = _wrap(xp.asarray((1.0 / div).astype(x._data.dtype)))
    return _unbatch(PE.mul(PC.window_sum(xin, scale=1.0, **geo), inv), added)


def avg_pool1d(input: Tensor, kernel_size: _IntOrTuple,
               stride: _IntOrTuple | None = None, padding: _IntOrTuple = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """1-D average pooling over (N, C, L) or (C, L); ``stride`` defaults to ``kernel_size``;
    zero ``padding`` counts in the divisor unless ``count_include_pad=False``.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import avg_pool1d
        >>> avg_pool1d(chainrule.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
        tensor([[[2., 1.]]])
    """
    return _avg_poolnd("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: _IntOrTuple,
               stride: _IntOrTuple | None = None, padding: _IntOrTuple = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """2-D average pooling over (N, C, H, W) or (C, H, W). ``stride`` defaults to
    ``kernel_size``; zero ``padding`` counts in the divisor unless
    ``count_include_pad=False``; windows that ``ceil_mode`` adds past the padding are
    divided by their size inside it; ``divisor_override`` replaces every divisor.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import avg_pool2d
        >>> avg_pool2d(chainrule.arange(16.0).reshape(1, 1, 4, 4), 2)
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
    """
    return _avg_poolnd("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override)


@autocast_fp32
def avg_pool3d(input: Tensor, kernel_size: _IntOrTuple,
               stride: _IntOrTuple | None = None, padding: _IntOrTuple = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """3-D average pooling over (N, C, D, H, W) or (C, D, H, W); arguments as
    :func:`avg_pool2d`, with triples.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import avg_pool3d
        >>> avg_pool3d(chainrule.arange(8.0).reshape(1, 1, 2, 2, 2), 2).flatten().tolist()
        [3.5]
    """
    return _avg_poolnd("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override)


def _adaptive_matrix(n: int, o: int) -> np.ndarray:
    """(o, n) averaging matrix of PyTorch's adaptive windows [floor(i n / o), ceil((i+1) n / o))."""
    i = np.arange(o)
    start = (i * n) // o
    end = -((-(i + 1) * n) // o)
    j = np.arange(n)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside / (end - start)[:, None]


def _adaptive_avg_poolnd(op, nd, input, output_size):
    x, added = _as_batched(_t(input), nd, op)
    _check_float(op, input=x)
    size = tuple(x.shape[2:])
    if isinstance(output_size, (tuple, list)) and len(output_size) == nd:
        out = tuple(n if o is None else o for n, o in zip(size, output_size))
    else:
        out = output_size
    out = _ntuple(out, nd, "output_size", op, 1)
    if any(n == 0 for n in size):
        raise ShapeError(f"{op}: input of shape {tuple(x.shape)} has an empty spatial dim")
    if out == size:
        return _unbatch(x, added)
    if all(o == 1 for o in out):
        return _unbatch(R.mean(x, tuple(range(2, 2 + nd)), keepdim=True), added)
    if all(n % o == 0 for n, o in zip(size, out)):
        kernel = tuple(n // o for n, o in zip(size, out))
        y = PC.window_sum(x, kernel=kernel, stride=kernel, padding=((0, 0),) * nd,
                          dilation=(1,) * nd, scale=1.0 / math.prod(kernel))
        return _unbatch(y, added)
    # general sizes: a product with one (out, in) averaging matrix per spatial dim
    xp = backend.get_array_module(x._data)
    dt = x._data.dtype
    y = x
    for d in reversed(range(nd)):
        m = _wrap(xp.asarray(_adaptive_matrix(size[d], out[d]).astype(dt)))
        if d == nd - 1:
            y = matmul(y, PM.permute(m, axes=(1, 0)))
        else:  # move dim d last, multiply, move back
            axes = tuple(i for i in range(y.ndim) if i != 2 + d) + (2 + d,)
            inv = tuple(np.argsort(axes))
            y = PM.permute(matmul(PM.permute(y, axes=axes), PM.permute(m, axes=(1, 0))),
                           axes=tuple(int(a) for a in inv))
    return _unbatch(y, added)


def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """Average pooling to a fixed output length; window i covers
    [floor(i L / out), ceil((i + 1) L / out)) as in PyTorch.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import adaptive_avg_pool1d
        >>> adaptive_avg_pool1d(chainrule.tensor([[[1.0, 2.0, 3.0]]]), 2)
        tensor([[[1.5000, 2.5000]]])
    """
    return _adaptive_avg_poolnd("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    """Average pooling to a fixed output size (an int, or a pair whose None entries keep the
    input size); window i covers [floor(i n / out), ceil((i + 1) n / out)) per dim. Output
    1x1 is a mean; sizes that divide the input are an ordinary average pool; other sizes are
    a product with one averaging matrix per dim.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import adaptive_avg_pool2d
        >>> adaptive_avg_pool2d(chainrule.arange(16.0).reshape(1, 1, 4, 4), 1)
        tensor([[[[7.5000]]]])
    """
    return _adaptive_avg_poolnd("adaptive_avg_pool2d", 2, input, output_size)


@autocast_fp32
def adaptive_avg_pool3d(input: Tensor,
                        output_size: int | Sequence[int | None]) -> Tensor:
    """Average pooling of (N, C, D, H, W) to a fixed output size; as
    :func:`adaptive_avg_pool2d`, with triples.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import adaptive_avg_pool3d
        >>> adaptive_avg_pool3d(chainrule.ones(1, 1, 3, 4, 5), (1, 2, 3)).shape
        (1, 1, 1, 2, 3)
    """
    return _adaptive_avg_poolnd("adaptive_avg_pool3d", 3, input, output_size)


def _adaptive_max(input, output_size, nd: int, op: str, return_indices: bool) -> Tensor:
    """Max over PyTorch's adaptive windows: cell i of a dim of size n covers
    [floor(i n / o), ceil((i + 1) n / o)). Each cell is one amax, so the gradient goes to
    the maximum of each window."""
    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported; the pooled "
                                  "values carry the gradient to each window's maximum")
    x = _t(input)
    if x.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: expected a {nd + 1}-D or {nd + 2}-D input, got shape "
                         f"{tuple(x.shape)}")
    sizes = (output_size,) * nd if isinstance(output_size, int) else tuple(output_size)
    spatial = x.shape[x.ndim - nd:]
    sizes = tuple(n if o is None else int(o) for o, n in zip(sizes, spatial))
    lead = x.ndim - nd

    def pooled(y, k):
        if k == nd:
            return R.amax(y, tuple(range(lead, lead + nd)))
        n, o = spatial[k], sizes[k]
        cells = []
        for i in range(o):
            lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
            cells.append(pooled(getitem(y, (slice(None),) * (lead + k) + (slice(lo, hi),)),
                                k + 1))
        return stack(cells, lead)  # this dim's cells go before the inner dims' cells

    return pooled(x, 0)


def adaptive_max_pool1d(input, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool (N, C, L) to a fixed length.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.adaptive_max_pool1d(chainrule.tensor([[[1.0, 5.0, 2.0, 4.0]]]), 2)
        tensor([[[5., 4.]]])
    """
    return _adaptive_max(input, output_size, 1, "adaptive_max_pool1d", return_indices)


def adaptive_max_pool2d(input, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool (N, C, H, W) to a fixed size (``None`` keeps that dimension).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.adaptive_max_pool2d(chainrule.arange(16.0).reshape(1, 1, 4, 4), 1).flatten()
        tensor([15.])
    """
    return _adaptive_max(input, output_size, 2, "adaptive_max_pool2d", return_indices)


def adaptive_max_pool3d(input, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool (N, C, D, H, W) to a fixed size.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.adaptive_max_pool3d(chainrule.ones(1, 1, 2, 2, 2), 1).shape
        (1, 1, 1, 1, 1)
    """
    return _adaptive_max(input, output_size, 3, "adaptive_max_pool3d", return_indices)
