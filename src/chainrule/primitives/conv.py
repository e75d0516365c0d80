"""Convolution and pooling primitives, over any number of spatial dims (N, C, *spatial).

Every op here works on a strided *view* of the padded input (``_windows``: shape
(N, C, *kernel, *out), no copy): convolutions copy it into im2col columns (a batch chunk at a
time, so the copy and the BLAS product that reads it meet in cache) and multiply; pooling
folds it with one vectorised pass per kernel offset. Adjoints write into the same view
(col2im: one assignment where windows are disjoint, else one strided add per kernel offset;
stride-1 transposed convolutions use a flat layout that needs only one add per kernel row).
Python loops run over kernel offsets and batch chunks, never over pixels.

Three closed families, so that every rule is itself made of primitives of the family and
grad-of-grad works to any order:

* convolution. With the bilinear form ``B(x, w, y) = <conv(x, w), y>``:
  ``conv = dB/dy``, ``conv_transpose = dB/dx`` and ``conv_weight = dB/dw``. Each one's
  derivatives are the other two (table in the block below).
* max pooling. ``max_pool`` gives the window maxima; ``max_pool_index`` (not differentiable)
  the offset of the maximum inside each window (the first one on ties, as PyTorch);
  ``window_gather`` / ``window_scatter`` read / accumulate at those offsets and are each
  other's transpose.
* sum pooling. ``window_sum`` (times a constant scale) and ``window_sum_t``, its transpose.

Geometry parameters are tuples with one entry per spatial dim: ``stride``, ``dilation``,
``kernel``; ``padding`` holds ``(lo, hi)`` pairs (asymmetric padding serves 'same' and
ceil_mode).

Example:
    >>> import numpy as np
    >>> from chainrule.primitives import RAW
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> RAW.window_sum(x, kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)),
    ...                dilation=(1, 1), scale=0.25)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
"""

from __future__ import annotations

import functools
import itertools
from math import prod

from ..backend.avals import index_dtype
from .core import Aval, Primitive
from .fast import K, kernel
from .shapes import promoted


# ---------------------------------------------------------------- geometry helpers
def out_size(size, kernel, stride, padding, dilation) -> tuple:
    """Output spatial size of a window op (floor mode; ceil mode is extra hi padding)."""
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1
                 for n, k, s, (lo, hi), d in zip(size, kernel, stride, padding, dilation))


def _pad(xp, x, padding, value=0.0):
    """``x`` padded on its spatial dims with ``value`` (``x`` itself when nothing to pad)."""
    if not any(lo or hi for lo, hi in padding):
        return x
    shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], padding))
    if value == 0:
        z = xp.zeros(shape, dtype=x.dtype)
    else:
        z = xp.full(shape, value, dtype=x.dtype)
    z[(slice(None), slice(None)) + tuple(slice(lo, lo + n)
                                         for n, (lo, _) in zip(x.shape[2:], padding))] = x
    return z


def _crop(xp, z, padding, size, b=None):
    """The inverse of ``_pad``: the (contiguous) interior of ``z`` (+ bias b per channel)."""
    if not any(lo or hi for lo, hi in padding):
        if b is not None:
            z += b.reshape((1, -1) + (1,) * len(size))
        return z
    inner = z[(slice(None), slice(None)) + tuple(slice(lo, lo + n)
                                                 for n, (lo, _) in zip(size, padding))]
    if b is None:
        return xp.ascontiguousarray(inner)
    return xp.add(inner, b.reshape((1, -1) + (1,) * len(size)))


def _strided(xp, a, shape, strides, offset=0):
    """``as_strided`` of ``a`` (offset in elements; only for C-contiguous ``a``).

    For C-contiguous NumPy arrays the ndarray constructor does this several times faster
    than ``as_strided`` (which goes through ``__array_interface__``); it also checks that the
    view stays inside the buffer."""
    if xp.__name__ == "numpy" and a.flags.c_contiguous:
        return xp.ndarray(shape, a.dtype, buffer=a, offset=offset * a.itemsize,
                          strides=strides)
    if offset:
        a = a.reshape(-1)[offset:]
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def _windows(xp, xpad, kernel, stride, dilation, out):
    """Strided view ``v[n, c, *i, *o] = xpad[n, c, *(o * stride + i * dilation)]``."""
    st = xpad.strides
    sp = st[2:]
    shape = xpad.shape[:2] + tuple(kernel) + tuple(out)
    strides = st[:2] + tuple(s * d for s, d in zip(sp, dilation)) + \
        tuple(s * k for s, k in zip(sp, stride))
    return _strided(xp, xpad, shape, strides)


def _disjoint(kernel, stride, dilation) -> bool:
    """True when no padded element lies in two windows (so col2im is one assignment)."""
    return all(k == 1 or s >= d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation))


_LEAD = (slice(None), slice(None))


def _offsets(kernel) -> tuple:
    """Kernel offsets in row-major order (the order of the flat window index)."""
    return _offsets_of(tuple(kernel))


@functools.lru_cache(maxsize=256)
def _offsets_of(kernel: tuple) -> tuple:
    return tuple(itertools.product(*(range(k) for k in kernel)))


def _padded_shape(lead, size, padding):
    return tuple(lead) + tuple(n + lo + hi for n, (lo, hi) in zip(size, padding))


# ---------------------------------------------------------------- layouts
# conv and conv_weight: the im2col columns of each image are its window view (C, *kernel,
# *out), copied. The batch is processed in chunks whose columns fit in about _CHUNK_BYTES,
# so that the im2col copy and the BLAS product that reads it meet in cache (measured here
# about 2x faster than one whole-batch copy followed by one product).
#
# conv_transpose with stride 1 uses the flat layout: flatten the padded spatial dims, so
# that kernel offset i is a plain shift off(i) along the flat axis and output position o
# sits at flat index q(o) (row-major in the padded shape). Col2im then becomes a few adds
# of long contiguous rows (see _conv_transpose_flat); positions q that are not outputs
# (each row's right margin) are held at zero.
_CHUNK_BYTES = 1 << 20


def _batch_chunks(xp, n: int, item_bytes: int):
    """(slices covering range(n), chunk size) for per-item working sets of item_bytes (one
    chunk on a GPU, where there is no CPU cache to fit and each chunk costs launches)."""
    if xp.__name__ != "numpy":
        return [slice(0, n)], max(n, 1)
    b = max(1, min(n, _CHUNK_BYTES // max(1, item_bytes)))
    return [slice(i, min(n, i + b)) for i in range(0, n, b)], b


def _flat_strides(padded) -> tuple:
    """Row-major element strides of a padded spatial shape."""
    return tuple(prod(padded[d + 1:]) for d in range(len(padded)))


def _col_view(xp, x, kernel, stride, padding, dilation, out, groups):
    """Window view (N, G, C/G, *kernel, *out) of the padded input; one image's columns are
    its item reshaped to (G, C/G * prod(kernel), prod(out))."""
    n, c = x.shape[:2]
    win = _windows(xp, _pad(xp, x, padding), kernel, stride, dilation, out)
    return win.reshape((n, groups, c // groups) + win.shape[2:])


def _col2im(xp, cols, shape, kernel, stride, dilation):
    """Adjoint of ``_windows``: sum ``cols`` (N, C, *kernel, *out) into zeros of ``shape``."""
    z = xp.zeros(shape, dtype=cols.dtype)
    win = _windows(xp, z, kernel, stride, dilation, cols.shape[2 + len(kernel):])
    if _disjoint(kernel, stride, dilation):
        win[...] = cols
    else:  # one strided add per kernel offset; within one offset no element repeats
        for off in _offsets(kernel):
            win[_LEAD + off] += cols[_LEAD + off]
    return z


# ---------------------------------------------------------------- convolution kernels
def _bias_view(b, nd):
    return b.reshape((1, -1) + (1,) * nd)


def _conv(xp, x, w, b, stride, padding, dilation, groups):
    y = K.conv_flat(xp, x, w, b, stride, padding, dilation, groups)
    if y is not None:
        return y
    n = x.shape[0]
    o = w.shape[0]
    kernel = tuple(w.shape[2:])
    out = out_size(x.shape[2:], kernel, stride, padding, dilation)
    view = _col_view(xp, x, kernel, stride, padding, dilation, out, groups)
    k, lane = w.shape[1] * prod(kernel), prod(out)
    wm = w.reshape(groups, o // groups, k)
    y = xp.empty((n, o) + out, dtype=x.dtype)
    chunks, size = _batch_chunks(xp, n, groups * k * lane * x.itemsize)
    buf = xp.empty((size,) + view.shape[1:], dtype=x.dtype)
    for sl in chunks:
        m = sl.stop - sl.start
        xp.copyto(buf[:m], view[sl])  # im2col of this chunk, then batched BLAS over (N, G)
        xp.matmul(wm, buf[:m].reshape(m, groups, k, lane),
                  out=y[sl].reshape(m, groups, o // groups, lane))
        if b is not None:  # while the chunk is in cache
            y[sl] += _bias_view(b, len(out))
    return y


@kernel("conv_flat")
def _conv_flat(xp, x, w, b, stride, padding, dilation, groups):
    """Stride-1 convolution (two or more spatial dims, NumPy) on the flat layout: each
    image's padded spatial dims flattened, so that kernel offset i is a shift off(i) along
    the flat axis and output position o sits at q(o) (row-major in the padded shape). The
    im2col columns of one (channel, offset) are then one contiguous run of L = q(last
    output) + 1 elements instead of out[0] * ... runs of out[-1] (NumPy's copy pays per
    run). The product also fills the positions of each row's right margin, which are not
    outputs (about 40% more FLOPs for LeNet's conv2); they are dropped per chunk. A CPU
    copy-cost fix: None (declined) for other cases.
    """
    if len(stride) < 2 or any(v != 1 for v in stride) or xp.__name__ != "numpy":
        return None
    n, c = x.shape[:2]
    o = w.shape[0]
    kernel = tuple(w.shape[2:])
    xpad = _pad(xp, x, padding)
    if not xpad.flags.c_contiguous:
        xpad = xp.ascontiguousarray(xpad)
    padded = xpad.shape[2:]
    out = out_size(x.shape[2:], kernel, (1,) * len(kernel), padding, dilation)
    fs = _flat_strides(padded)
    span = sum((m - 1) * f for m, f in zip(out, fs)) + 1  # L
    e, st, cg, og = xpad.itemsize, xpad.strides, c // groups, o // groups
    view = _strided(xp, xpad, (n, groups, cg) + kernel + (span,),
                    (st[0], st[1] * cg, st[1]) + tuple(d * f * e for d, f in zip(dilation, fs)) +
                    (e,))
    k = cg * prod(kernel)
    wm = w.reshape(groups, og, k)
    full = out[0] * prod(padded[1:])
    y = xp.empty((n, o) + out, dtype=x.dtype)
    chunks, size = _batch_chunks(xp, n, groups * k * span * x.itemsize)
    buf = xp.empty((size,) + view.shape[1:], dtype=x.dtype)
    yfull = xp.empty((size, o, full), dtype=x.dtype)
    crop = _LEAD + (slice(None),) + tuple(slice(0, m) for m in out[1:])
    for sl in chunks:
        m = sl.stop - sl.start
        xp.copyto(buf[:m], view[sl])
        xp.matmul(wm, buf[:m].reshape(m, groups, k, span),
                  out=yfull[:m].reshape(m, groups, og, full)[..., :span])
        # drop the margins (and add the bias) while the chunk is in cache: a strided result
        # would make every later pass over it pay per run as well
        z = yfull[:m].reshape((m, o, out[0]) + tuple(padded[1:]))[crop]
        if b is None:
            xp.copyto(y[sl], z)
        else:
            xp.add(z, _bias_view(b, len(out)), out=y[sl])
    return y


def _conv_weight(xp, x, y, stride, padding, dilation, groups, kernel):
    c = x.shape[1]
    n, o = y.shape[:2]
    out = y.shape[2:]
    og = o // groups
    view = _col_view(xp, x, kernel, stride, padding, dilation, out, groups)
    k, lane = (c // groups) * prod(kernel), prod(out)
    chunks, size = _batch_chunks(xp, n, groups * k * lane * x.itemsize)
    buf = xp.empty((size,) + view.shape[1:], dtype=x.dtype)
    part = xp.empty((size, groups, k, og), dtype=x.dtype)
    dwt = xp.zeros((groups, k, og), dtype=x.dtype)
    for sl in chunks:
        m = sl.stop - sl.start
        xp.copyto(buf[:m], view[sl])
        cols = buf[:m].reshape(m, groups, k, lane)
        # cols @ y^T: up to 2x faster in OpenBLAS than y @ cols^T for these shapes
        xp.matmul(cols, y[sl].reshape(m, groups, og, lane).transpose(0, 1, 3, 2),
                  out=part[:m])
        dwt += part[:m].sum(axis=0)
    return dwt.transpose(0, 2, 1).reshape((o, c // groups) + tuple(kernel))


def _conv_transpose(xp, y, w, b, stride, padding, dilation, groups, size):
    n, o = y.shape[:2]
    kernel = tuple(w.shape[2:])
    c = w.shape[1] * groups
    padded = _padded_shape((), size, padding)
    z = K.conv_transpose_flat(xp, y, w, stride, groups, padded, dilation)
    if z is None:
        out = y.shape[2:]
        wm = w.reshape(groups, o // groups, -1)
        ym = y.reshape(n, groups, o // groups, prod(out))
        cols = xp.matmul(wm.transpose(0, 2, 1), ym)  # (N, G, C/G * K, L)
        cols = cols.reshape((n, c) + kernel + tuple(out))
        z = _col2im(xp, cols, (n, c) + padded, kernel, stride, dilation)
    return _crop(xp, z, padding, size, b)


@kernel("conv_transpose_flat")
def _conv_transpose_flat(xp, y, w, stride, groups, padded, dilation):
    """Stride-1 transposed convolution (two or more spatial dims) on the flat layout, as a
    product and a few shifts; None (declined) for other strides.

    With the last spatial dim's kernel offsets j folded into the product and the other
    dims' offsets i ("rows") done as shifted adds:
    ``z[c, p] = sum_i R[(i, c), p + F - off(i)]`` with
    ``R[(i, c), s] = sum_{o, j} w[o, c, i, j] * yz[o, s + (kj - 1 - j) * dj]``, where yz is y
    on the flat layout behind F_total = F + (kj - 1) * dj leading zeros. That is
    prod(kernel[:-1]) adds instead of prod(kernel) for plain col2im.
    """
    if len(stride) < 2 or any(v != 1 for v in stride):
        return None
    n, o = y.shape[:2]
    out = y.shape[2:]
    kernel = tuple(w.shape[2:])
    cg, og = w.shape[1], o // groups
    kj, dj = kernel[-1], dilation[-1]
    fs = _flat_strides(padded)
    rows = _offsets(kernel[:-1])
    row_off = [sum(i * d * f for i, d, f in zip(r, dilation, fs)) for r in rows]
    f_rows = max(row_off)
    f_total = f_rows + (kj - 1) * dj
    plen = prod(padded)
    qr = plen + f_rows
    e = y.itemsize
    # ws[g, (i, c), (o, j)] = w[g * og + o, c, i, j]
    ws = w.reshape((groups, og, cg, len(rows), kj)).transpose(0, 3, 2, 1, 4)
    ws = ws.reshape(groups, len(rows) * cg, og * kj)
    chunks, size = _batch_chunks(xp, n, groups * og * kj * qr * e)
    yz = xp.zeros((size, o, plen + f_total), dtype=y.dtype)
    st = yz.strides
    yz_grid = _strided(xp, yz, (size, o) + tuple(out),
                       st[:2] + tuple(f * e for f in fs), offset=f_total)
    # shifted copies: view[n, o, j, s] = yz[n, o, s + (kj - 1 - j) * dj]
    shifted = _strided(xp, yz, (size, o, kj, qr), (st[0], st[1], -dj * e, e),
                       offset=(kj - 1) * dj)
    gbuf = xp.empty((size, o, kj, qr), dtype=y.dtype)
    rbuf = xp.empty((size, groups, len(rows) * cg, qr), dtype=y.dtype)
    z = xp.empty((n, groups * cg, plen), dtype=y.dtype)
    for sl in chunks:
        m = sl.stop - sl.start
        yz_grid[:m] = y[sl]
        xp.copyto(gbuf[:m], shifted[:m])
        xp.matmul(ws, gbuf[:m].reshape(m, groups, og * kj, qr), out=rbuf[:m])
        r = rbuf[:m].reshape(m, groups, len(rows), cg, qr)
        zc = z[sl].reshape(m, groups, cg, plen)
        for t, off in enumerate(row_off):
            part = r[:, :, t, :, f_rows - off:f_rows - off + plen]
            if t == 0:
                zc[...] = part
            else:
                zc += part
    return z.reshape((n, groups * cg) + tuple(padded))


def _fit_out(F, y, shape):
    """Crop a conv result to ``shape``: a transposed conv with output_padding >= stride
    (allowed when dilation > stride) has inputs that its adjoint conv does not reach."""
    if tuple(y.shape) == tuple(shape):
        return y
    return F.getitem(y, index=tuple(slice(0, s) for s in shape))


def _bias_grad(F, g):
    """Cotangent of a per-channel bias: g summed over batch and spatial dims."""
    return F.sum(g, axes=(0,) + tuple(range(2, len(g.shape))), keepdims=False)


def _bias_tangent(F, t, shape):
    return F.broadcast_to(F.reshape(t, shape=(1, shape[1]) + (1,) * (len(shape) - 2)),
                          shape=tuple(shape))


def _conv_shape(x, w, stride, padding, dilation, groups):
    return (x.shape[0], w.shape[0]) + out_size(x.shape[2:], w.shape[2:], stride, padding,
                                               dilation)


def _conv_t_shape(y, w, groups, size, **_):
    return (y.shape[0], w.shape[1] * groups) + tuple(size)


# With B(x, w, y) = <conv(x, w), y>:  conv = dB/dy,  conv_transpose(y, w) = dB/dx,
# conv_weight(x, y) = dB/dw. Each one's rules are the other two. The optional per-channel
# bias b (None when absent) of conv and conv_transpose is added to their output.
conv = Primitive(
    "conv", _conv, save="in",
    vjp=[lambda F, g, x, w, b, out, **p: F.conv_transpose(g, w, None, size=tuple(x.shape[2:]),
                                                          **p),
         lambda F, g, x, w, b, out, **p: F.conv_weight(x, g, kernel=tuple(w.shape[2:]), **p),
         lambda F, g, x, w, b, out, **p: _bias_grad(F, g)],
    jvp=[lambda F, t, x, w, b, out, **p: F.conv(t, w, None, **p),
         lambda F, t, x, w, b, out, **p: F.conv(x, t, None, **p),
         lambda F, t, x, w, b, out, **p: _bias_tangent(F, t, _conv_shape(x, w, **p))], kind="fused",
    shape=lambda x, w, b, **p: Aval(_conv_shape(x, w, **p), promoted(x, w, b)))

conv_transpose = Primitive(
    "conv_transpose", _conv_transpose, save="in",
    vjp=[lambda F, g, y, w, b, out, size, **p: _fit_out(F, F.conv(g, w, None, **p), y.shape),
         lambda F, g, y, w, b, out, size, **p: F.conv_weight(g, y, kernel=tuple(w.shape[2:]),
                                                             **p),
         lambda F, g, y, w, b, out, size, **p: _bias_grad(F, g)],
    jvp=[lambda F, t, y, w, b, out, size, **p: F.conv_transpose(t, w, None, size=size, **p),
         lambda F, t, y, w, b, out, size, **p: F.conv_transpose(y, t, None, size=size, **p),
         lambda F, t, y, w, b, out, size, **p: _bias_tangent(
             F, t, _conv_t_shape(y, w, size=size, **p))], kind="fused",
    shape=lambda y, w, b, **p: Aval(_conv_t_shape(y, w, **p), promoted(y, w, b)))

conv_weight = Primitive(
    "conv_weight", _conv_weight, save="in",
    vjp=[lambda F, g, x, y, out, kernel, **p: F.conv_transpose(y, g, None,
                                                               size=tuple(x.shape[2:]), **p),
         lambda F, g, x, y, out, kernel, **p: _fit_out(F, F.conv(x, g, None, **p), y.shape)],
    jvp=[lambda F, t, x, y, out, kernel, **p: F.conv_weight(t, y, kernel=kernel, **p),
         lambda F, t, x, y, out, kernel, **p: F.conv_weight(x, t, kernel=kernel, **p)],
         kind="fused",
    shape=lambda x, y, kernel, groups, **p: Aval(
        (y.shape[1], x.shape[1] // groups) + tuple(kernel), promoted(x, y)))


# ---------------------------------------------------------------- max pooling family
def _pool_windows(xp, x, kernel, stride, padding, dilation, fill):
    out = out_size(x.shape[2:], kernel, stride, padding, dilation)
    return _windows(xp, _pad(xp, x, padding, fill), kernel, stride, dilation, out)


def _fold(xp, fn, win, kernel):
    """``fn``-reduce the kernel axes of a window view, one offset at a time: each step is a
    vectorised pass over all outputs (a NumPy reduction over the small strided kernel axes
    themselves is far slower)."""
    offs = _offsets(kernel)
    if len(offs) == 1:
        return win[_LEAD + offs[0]].copy()
    acc = fn(win[_LEAD + offs[0]], win[_LEAD + offs[1]])
    for off in offs[2:]:
        fn(acc, win[_LEAD + off], out=acc)
    return acc


def _max_pool(xp, x, kernel, stride, padding, dilation):
    win = _pool_windows(xp, x, kernel, stride, padding, dilation, -xp.inf)
    return _fold(xp, xp.maximum, win, kernel)


def _index_dtype(xp, k):
    return xp.int8 if k <= 127 else xp.int32


def _max_pool_index(xp, x, out, kernel, stride, padding, dilation):
    """Row-major offset inside its window of each window's first maximum ``out``."""
    win = _pool_windows(xp, x, kernel, stride, padding, dilation, -xp.inf)
    offs = _offsets(kernel)
    if bool(xp.isnan(out).any()):  # NaN never compares equal: take the first NaN instead
        flat = win.reshape(x.shape[:2] + (len(offs),) + out.shape[2:])
        return flat.argmax(axis=2).astype(_index_dtype(xp, len(offs)))
    dt = _index_dtype(xp, len(offs))
    idx = xp.full(out.shape, len(offs) - 1, dtype=dt)
    for k in range(len(offs) - 2, -1, -1):  # downwards, so the first maximum wins
        hit = win[_LEAD + offs[k]] == out
        idx -= hit * (idx - dt(k)).astype(dt, copy=False)
    return idx


def _window_gather(xp, x, idx, kernel, stride, padding, dilation):
    win = _windows(xp, _pad(xp, x, padding), kernel, stride, dilation, idx.shape[2:])
    out = xp.zeros(idx.shape, dtype=x.dtype)
    for k, off in enumerate(_offsets(kernel)):
        out = xp.where(idx == k, win[_LEAD + off], out)
    return out


def _window_scatter(xp, g, idx, kernel, stride, padding, dilation, size):
    z = xp.zeros(_padded_shape(g.shape[:2], size, padding), dtype=g.dtype)
    win = _windows(xp, z, kernel, stride, dilation, g.shape[2:])
    disjoint = _disjoint(kernel, stride, dilation)
    # g * mask is ~4x faster than a masked copy, but inf * 0 is nan: only for finite g
    finite = bool(xp.isfinite(g).all())
    for k, off in enumerate(_offsets(kernel)):
        mask = idx == k
        dst = win[_LEAD + off]
        if finite and disjoint:  # every padded element is written at most once
            xp.multiply(g, mask, out=dst)
            continue
        part = g * mask if finite else xp.where(mask, g, 0).astype(g.dtype, copy=False)
        if disjoint:
            dst[...] = part
        else:
            dst += part
    return _crop(xp, z, padding, size)


def _pooled_shape(x, kernel, stride, padding, dilation) -> Aval:
    return Aval(tuple(x.shape[:2]) + out_size(x.shape[2:], kernel, stride, padding, dilation),
                x.dtype)


max_pool = Primitive(
    "max_pool", _max_pool, save="in,out",
    vjp=[lambda F, g, x, out, **p: F.window_scatter(g, F.max_pool_index(x, out, **p),
                                                    size=tuple(x.shape[2:]), **p)],
    jvp=[lambda F, t, x, out, **p: F.window_gather(t, F.max_pool_index(x, out, **p), **p)],
    kind="window",
    shape=_pooled_shape)

max_pool_index = Primitive("max_pool_index", _max_pool_index, vjp=[None, None],
                           jvp=[None, None], differentiable=False, kind="window",
    shape=lambda x, out, kernel, **p: Aval(out.shape, index_dtype(prod(kernel))))

window_gather = Primitive(
    "window_gather", _window_gather, save="in",
    vjp=[lambda F, g, x, idx, out, **p: F.window_scatter(g, idx, size=tuple(x.shape[2:]), **p),
         None],
    jvp=[lambda F, t, x, idx, out, **p: F.window_gather(t, idx, **p), None], kind="window",
    shape=lambda x, idx, **p: Aval(idx.shape, x.dtype))

window_scatter = Primitive(
    "window_scatter", _window_scatter, save="in",
    vjp=[lambda F, g, gy, idx, out, size, **p: F.window_gather(g, idx, **p), None],
    jvp=[lambda F, t, gy, idx, out, size, **p: F.window_scatter(t, idx, size=size, **p), None],
    kind="window",
    shape=lambda g, idx, size, **p: Aval(g.shape[:2] + tuple(size), g.dtype))


# ---------------------------------------------------------------- sum pooling family
def _window_sum(xp, x, kernel, stride, padding, dilation, scale):
    y = _fold(xp, xp.add, _pool_windows(xp, x, kernel, stride, padding, dilation, 0), kernel)
    if scale != 1:
        y *= scale
    return y


def _window_sum_t(xp, g, kernel, stride, padding, dilation, scale, size):
    gs = g * scale if scale != 1 else g
    z = xp.zeros(_padded_shape(g.shape[:2], size, padding), dtype=g.dtype)
    win = _windows(xp, z, kernel, stride, dilation, g.shape[2:])
    if _disjoint(kernel, stride, dilation):
        win[...] = gs[_LEAD + (None,) * len(kernel)]
    else:
        for off in _offsets(kernel):
            win[_LEAD + off] += gs
    return _crop(xp, z, padding, size)


window_sum = Primitive(
    "window_sum", _window_sum,
    vjp=[lambda F, g, x, out, **p: F.window_sum_t(g, size=tuple(x.shape[2:]), **p)],
    jvp=[lambda F, t, x, out, **p: F.window_sum(t, **p)], kind="window",
    shape=lambda x, scale, **p: _pooled_shape(x, **p))

window_sum_t = Primitive(
    "window_sum_t", _window_sum_t,
    vjp=[lambda F, g, gy, out, size, **p: F.window_sum(g, **p)],
    jvp=[lambda F, t, gy, out, size, **p: F.window_sum_t(t, size=size, **p)], kind="window",
    shape=lambda g, size, **p: Aval(g.shape[:2] + tuple(size), g.dtype))
