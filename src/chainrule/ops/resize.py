"""Resizing: ``interpolate`` (nearest, nearest-exact, (bi/tri)linear) and
``upsample_nearest``, with PyTorch's names, signatures, defaults and source-index rules; built
on indexing, broadcasting and reshape primitives (the two are also importable from
:mod:`chainrule.ops.conv`, where they used to live); and ``pixel_shuffle`` /
``pixel_unshuffle``, PyTorch's other vision functions.

Example:
    >>> import chainrule
    >>> from chainrule.ops.resize import interpolate
    >>> interpolate(chainrule.tensor([[[1.0, 2.0]]]), size=4, mode="linear").tolist()
    [[[1.0, 1.25, 1.75, 2.0]]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import backend
from ..errors import ShapeError
from ..primitives import movement as PM
from ..tensor import Tensor, _wrap
from ._util import _ntuple
from .elementwise import _t
from .shape import permute, reshape

__all__ = ["interpolate", "pixel_shuffle", "pixel_unshuffle", "upsample_nearest"]


def _nearest_index(n: int, o: int, scale, exact: bool) -> np.ndarray:
    """Source index per output index, computed in float32 as PyTorch's kernels do."""
    i = np.arange(o)
    if not exact and o == n:
        return i
    if not exact and o == 2 * n:
        return i >> 1
    s = np.float32(1.0 / scale if scale is not None and scale > 0 else n / o)
    if exact:
        src = np.floor(((i + 0.5) * np.float64(s)).astype(np.float32))
    else:
        src = np.floor(i.astype(np.float32) * s)
    return np.minimum(src.astype(np.int64), n - 1)


def _resize_dim(y: Tensor, axis: int, idx: np.ndarray) -> Tensor:
    """``y`` indexed by ``idx`` along ``axis``, by the cheapest primitive that does it."""
    n = y.shape[axis]
    o = len(idx)
    lead = (slice(None),) * axis
    if o == n and np.array_equal(idx, np.arange(n)):
        return y
    if o % n == 0 and np.array_equal(idx, np.arange(n).repeat(o // n)):
        f = o // n  # integer upsampling: broadcast a new axis, then merge it
        shape = tuple(y.shape)
        y = PM.reshape(y, shape=shape[:axis + 1] + (1,) + shape[axis + 1:])
        y = PM.broadcast_to(y, shape=shape[:axis + 1] + (f,) + shape[axis + 1:])
        return PM.reshape(y, shape=shape[:axis] + (o,) + shape[axis + 1:])
    step = int(idx[1] - idx[0]) if o > 1 else 1
    if step > 0 and np.array_equal(idx, idx[0] + step * np.arange(o)):
        return PM.getitem(y, index=lead + (slice(int(idx[0]), int(idx[0]) + step * o, step),))
    xp = backend.get_array_module(y._data)
    return PM.getitem(y, xp.asarray(idx), index=lead + (PM.IndexArg(0),))


def interpolate(input: Tensor, size: int | Sequence[int] | None = None,
                scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims of (N, C, L), (N, C, H, W) or (N, C, D, H, W) by nearest
    neighbour or (bi/tri)linear interpolation: ``mode='nearest'`` takes source index
    ``floor(i * scale)`` (PyTorch's legacy rule), ``'nearest-exact'`` takes
    ``floor((i + 0.5) * scale)``, ``'linear'``/``'bilinear'``/``'trilinear'`` interpolate
    between neighbours (``align_corners`` as PyTorch); ``scale = in / out``, or
    ``1 / scale_factor`` when a scale factor is given and not recomputed. Give exactly one of
    ``size`` and ``scale_factor`` (output size ``floor(n * scale_factor)``).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import interpolate
        >>> interpolate(chainrule.tensor([[[1.0, 2.0]]]), scale_factor=2)
        tensor([[[1., 1., 2., 2.]]])
    """
    op = "interpolate"
    x = _t(input)
    linear = _LINEAR_MODES.get(mode)
    if mode not in ("nearest", "nearest-exact") and linear is None:
        raise ValueError(f"{op}: mode {mode!r} is not supported; chainrule implements "
                         f"'nearest', 'nearest-exact', 'linear', 'bilinear' and 'trilinear'")
    if linear is not None and x.ndim != linear + 2:
        raise ShapeError(f"{op}: mode {mode!r} needs a {linear + 2}-D input, got shape "
                         f"{tuple(x.shape)}")
    if linear is not None:
        if antialias:
            raise ValueError(f"{op}: antialias is not supported")
    elif align_corners is not None:
        raise ValueError(f"{op}: align_corners can only be set with the interpolating modes "
                         f"linear | bilinear | bicubic | trilinear, not {mode!r}")
    if antialias:
        raise ValueError(f"{op}: antialias is only available for the bilinear and bicubic "
                         f"modes, not {mode!r}")
    nd = x.ndim - 2
    if nd not in (1, 2, 3):
        raise ShapeError(f"{op}: expected a 3-D, 4-D or 5-D input (N, C, *spatial), got shape "
                         f"{tuple(x.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor")
    in_size = tuple(x.shape[2:])
    scales = [None] * nd
    if size is not None:
        out = _ntuple(size, nd, "size", op, 1)
    else:
        if isinstance(scale_factor, (tuple, list)):
            if len(scale_factor) != nd:
                raise ValueError(f"{op}: scale_factor has {len(scale_factor)} entries for "
                                 f"{nd} spatial dims (input shape {tuple(x.shape)})")
            sf = tuple(float(v) for v in scale_factor)
        else:
            sf = (float(scale_factor),) * nd
        if any(not v > 0 for v in sf):
            raise ValueError(f"{op}: scale_factor must be positive, got {scale_factor!r}")
        out = tuple(math.floor(n * v) for n, v in zip(in_size, sf))
        if any(o < 1 for o in out):
            raise ShapeError(f"{op}: scale_factor {scale_factor!r} gives an empty output for "
                             f"input shape {tuple(x.shape)}")
        if not recompute_scale_factor:
            scales = list(sf)
    if any(n == 0 for n in in_size):
        raise ShapeError(f"{op}: input of shape {tuple(x.shape)} has an empty spatial dim")
    y = x
    for d in range(nd):
        if linear is not None:
            y = _linear_dim(y, 2 + d, out[d], scales[d], bool(align_corners))
            continue
        idx = _nearest_index(in_size[d], out[d], scales[d], mode == "nearest-exact")
        y = _resize_dim(y, 2 + d, idx)
    return y


_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}  # issue 14


def _linear_dim(y: Tensor, axis: int, o: int, scale_factor, align_corners: bool) -> Tensor:
    """Linear interpolation along ``axis`` to ``o`` points, PyTorch's source-index rule:
    ``src = i * (n - 1) / (o - 1)`` with align_corners, else
    ``max((i + 0.5) * scale - 0.5, 0)`` with ``scale = 1 / scale_factor`` (or ``n / o``);
    the two neighbours are gathered, so the gradient flows to both."""
    n = y.shape[axis]
    i = np.arange(o, dtype=np.float64)
    if align_corners:
        src = i * ((n - 1) / (o - 1)) if o > 1 else np.zeros(o)
    else:
        scale = 1.0 / scale_factor if scale_factor else n / o
        src = np.maximum((i + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (src - i0).reshape((o,) + (1,) * (y.ndim - axis - 1))
    xp = backend.get_array_module(y._data)
    wt = _wrap(xp.asarray(w.astype(y._data.dtype)))
    return _resize_dim(y, axis, i0) * (1 - wt) + _resize_dim(y, axis, i1) * wt


def upsample_nearest(input: Tensor, size: int | Sequence[int] | None = None,
                     scale_factor: float | Sequence[float] | None = None) -> Tensor:
    """``interpolate(input, size, scale_factor, mode='nearest')`` (PyTorch's older name).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.conv import upsample_nearest
        >>> upsample_nearest(chainrule.tensor([[[1.0, 2.0]]]), size=3)
        tensor([[[1., 1., 2.]]])
    """
    return interpolate(input, size=size, scale_factor=scale_factor, mode="nearest")


def pixel_shuffle(input, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r), as PyTorch.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.pixel_shuffle(chainrule.zeros(1, 8, 2, 3), 2).shape
        (1, 2, 4, 6)
    """
    x = _t(input)
    r = int(upscale_factor)
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise ShapeError(f"pixel_shuffle: channels (dim -3) of shape {tuple(x.shape)} must be "
                         f"divisible by upscale_factor**2 = {r * r}")
    *lead, c, h, w = x.shape
    n = len(lead)
    y = reshape(x, (*lead, c // (r * r), r, r, h, w))
    y = permute(y, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return reshape(y, (*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W), the inverse of :func:`pixel_shuffle`.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.pixel_unshuffle(chainrule.zeros(1, 2, 4, 6), 2).shape
        (1, 8, 2, 3)
    """
    x = _t(input)
    r = int(downscale_factor)
    if x.ndim < 3 or x.shape[-1] % r or x.shape[-2] % r:
        raise ShapeError(f"pixel_unshuffle: height and width of shape {tuple(x.shape)} must be "
                         f"divisible by downscale_factor = {r}")
    *lead, c, h, w = x.shape
    n = len(lead)
    y = reshape(x, (*lead, c, h // r, r, w // r, r))
    y = permute(y, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return reshape(y, (*lead, c * r * r, h // r, w // r))
