"""Reductions and scans: sum, amax/amin, prod, cumsum, argmax/argmin, softmax, log_softmax.

``axes`` is a tuple of non-negative axes or None (all); the ops layer normalises it.
"""

from __future__ import annotations

import math

from ..backend import get_array_module
from ..backend.avals import INDEX, sum_dtype
from .core import Aval, Primitive
from .fast import K, kernel
from .shapes import elementwise, like_input, reduced, same_dtype


def keepdims_shape(shape: tuple, axes) -> tuple:
    """``shape`` with the reduced ``axes`` kept as size 1."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand(F, g, x, axes, keepdims):
    """A reduced cotangent reshaped so that it broadcasts against ``x``."""
    return g if keepdims else F.reshape(g, shape=keepdims_shape(x.shape, axes))


_BLAS_MIN = 4096  # elements below which NumPy's own reduction is as fast
_BLAS_ROW = 4096  # longest trailing run summed by BLAS (beyond it NumPy's pairwise sum)


@kernel("blas_sum")
def blas_sum(xp, x, axes):
    """The sum of a C-contiguous float32/float64 NumPy array over a leading block of axes
    and/or a trailing block, as BLAS matrix-vector products with a ones vector; None when
    that does not apply (the caller then uses NumPy's reduction).

    NumPy reduces over leading axes row by row and over a short last axis with per-row
    overhead, which the products avoid for a bias gradient or a convolution's (figures in
    BENCHMARKS.md, "Measurements behind the code"); they are no less accurate: NumPy's sum
    over leading axes is sequential, and trailing runs longer than 4096 are left to its
    pairwise sum.

    Example:
        >>> import numpy as np
        >>> blas_sum(np, np.ones((64, 8, 10), dtype=np.float32), (0, 2)).tolist() == [640.0] * 8
        True
    """
    # cheapest tests first: this runs before every sum, most of them small
    if not axes or x.size < _BLAS_MIN or len(axes) == x.ndim or xp.__name__ != "numpy" or \
            x.dtype.kind not in "fV" or x.dtype.itemsize < 4 or not x.flags.c_contiguous:
        return None
    axes = sorted(axes)
    lead = 0
    while lead < len(axes) and axes[lead] == lead:
        lead += 1
    trail = len(axes) - lead
    if axes[lead:] != list(range(x.ndim - trail, x.ndim)):
        return None
    kept = x.shape[lead:x.ndim - trail]
    m, k, t = (math.prod(x.shape[:lead]), math.prod(kept), math.prod(x.shape[x.ndim - trail:]))
    if t > _BLAS_ROW:
        return None
    r = x
    if lead:
        r = xp.ones(m, dtype=x.dtype) @ x.reshape(m, k * t)
    if trail:
        r = r.reshape(k, t) @ xp.ones(t, dtype=x.dtype)
    return r.reshape(kept)


def _reduced_sum(x, axes, keepdims) -> Aval:
    """Shape rule of sum and prod (small integers widen, as in NumPy)."""
    return Aval(reduced(x.shape, axes, keepdims), sum_dtype(x.dtype))


def _sum(xp, x, axes, keepdims):
    r = K.blas_sum(xp, x, axes)
    if r is None:
        return xp.sum(x, axis=axes, keepdims=keepdims)
    return r.reshape(keepdims_shape(x.shape, axes)) if keepdims else r


sum_p = Primitive(
    "sum", _sum,
    vjp=[lambda F, g, x, out, axes, keepdims:
         F.broadcast_to(_expand(F, g, x, axes, keepdims), shape=x.shape)],
    jvp=[lambda F, t, x, out, axes, keepdims: F.sum(t, axes=axes, keepdims=keepdims)],
    kind="reduction",
    shape=_reduced_sum)


def _extremum_weights(F, x, out, axes, keepdims):
    """1/count at the positions that attain the max (ties share the gradient evenly)."""
    mask = F.cast(x == _expand(F, out, x, axes, keepdims), dtype=_dtype_of(x))
    return mask / F.sum(mask, axes=axes, keepdims=True)


def _dtype_of(x):
    from ..backend import from_numpy_dtype  # noqa: PLC0415

    d = x.dtype
    return d if not hasattr(d, "kind") else from_numpy_dtype(d)


def _extremum(name, fn):
    return Primitive(
        name, lambda xp, x, axes, keepdims: getattr(xp, fn)(x, axis=axes, keepdims=keepdims),
        save="in,out",
        vjp=[lambda F, g, x, out, axes, keepdims:
             _expand(F, g, x, axes, keepdims) * _extremum_weights(F, x, out, axes, keepdims)],
        jvp=[lambda F, t, x, out, axes, keepdims:
             F.sum(t * _extremum_weights(F, x, out, axes, keepdims), axes=axes,
                   keepdims=keepdims)], kind="reduction",
        shape=lambda x, axes, keepdims: Aval(reduced(x.shape, axes, keepdims), x.dtype))


amax = _extremum("amax", "max")
amin = _extremum("amin", "min")


def _prod_vjp(F, g, x, out, axes, keepdims):
    # d prod / d x_i = product of the others. With P the product of the slice's non-zero
    # entries: no zero gives P / x_i; one zero (at j) gives P at j and 0 elsewhere; two or more
    # zeros give 0 everywhere. The zeros are kept in the expressions (zsum is their sum, 0 in
    # value) so that the derivative of this rule, the second order, is right as well:
    # x_j P / x_i for one zero, x_k P at the zero j for two zeros (j, k).
    g = _expand(F, g, x, axes, keepdims)
    is_zero = x == 0
    nzeros = F.sum(F.cast(is_zero, dtype=_dtype_of(x)), axes=axes, keepdims=True)
    x_nz = F.where(is_zero, 1, x)
    prod_nz = F.prod(x_nz, axes=axes, keepdims=True)
    zsum = F.sum(F.where(is_zero, x, 0), axes=axes, keepdims=True)
    no_zero = prod_nz / x_nz
    one_zero = F.where(is_zero, prod_nz, zsum * prod_nz / x_nz)
    two_zeros = F.where(is_zero, (zsum - x) * prod_nz, 0)
    others = F.where(nzeros == 0, no_zero, F.where(nzeros == 1, one_zero,
                                                   F.where(nzeros == 2, two_zeros, 0)))
    return g * others


prod = Primitive(
    "prod", lambda xp, x, axes, keepdims: xp.prod(x, axis=axes, keepdims=keepdims), save="in,out",
    vjp=[_prod_vjp],
    jvp=[lambda F, t, x, out, axes, keepdims:
         F.sum(t * _prod_vjp(F, F.ones_like(out), x, out, axes, keepdims), axes=axes,
               keepdims=keepdims)], kind="reduction",
    shape=_reduced_sum)

cumsum = Primitive(
    "cumsum", lambda xp, x, axis: xp.cumsum(x, axis=axis),
    vjp=[lambda F, g, x, out, axis:
         F.flip(F.cumsum(F.flip(g, axes=(axis,)), axis=axis), axes=(axis,))],
    jvp=[lambda F, t, x, out, axis: F.cumsum(t, axis=axis)], kind="along_axis",
    shape=lambda x, axis: Aval(x.shape, sum_dtype(x.dtype)))

def _arg_reduced(x, axis, keepdims) -> Aval:
    return Aval(reduced(x.shape, None if axis is None else (axis,), keepdims), INDEX)


argmax = Primitive("argmax", lambda xp, x, axis, keepdims: xp.argmax(x, axis=axis,
                                                                      keepdims=keepdims),
                   vjp=[None], differentiable=False, kind="index_reduction",
    shape=_arg_reduced)
argmin = Primitive("argmin", lambda xp, x, axis, keepdims: xp.argmin(x, axis=axis,
                                                                      keepdims=keepdims),
                   vjp=[None], differentiable=False, kind="index_reduction",
    shape=_arg_reduced)


def _log_softmax(xp, x, axis):
    m = xp.max(x, axis=axis, keepdims=True)
    z = x - m
    e = xp.exp(z)
    z -= xp.log(xp.sum(e, axis=axis, keepdims=True))
    return z


log_softmax = Primitive(
    "log_softmax", _log_softmax, save="out",
    vjp=[lambda F, g, x, out, axis: g - F.exp(out) * F.sum(g, axes=(axis,), keepdims=True)],
    jvp=[lambda F, t, x, out, axis: t - F.sum(F.exp(out) * t, axes=(axis,), keepdims=True)],
    kind="along_axis",
    shape=like_input)


def _softmax(xp, x, axis):
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    e /= xp.sum(e, axis=axis, keepdims=True)
    return e


softmax = Primitive(
    "softmax", _softmax, save="out",
    vjp=[lambda F, g, x, out, axis: out * (g - F.sum(g * out, axes=(axis,), keepdims=True))],
    jvp=[lambda F, t, x, out, axis: out * (t - F.sum(t * out, axes=(axis,), keepdims=True))],
    kind="along_axis",
    shape=like_input)

ones_like = Primitive("ones_like", lambda xp, x: xp.ones_like(x), vjp=[None],
                      differentiable=False, kind="elementwise",
    shape=elementwise(None, same_dtype()))


# ---------------------------------------------------------------- layer normalisation
# y = (x - mean(x)) / sqrt(var(x) + eps) over ``axes`` (biased variance). Fused because the
# composite records ~9 ops forward and ~20 backward per call, a visible share of the
# transformer benchmark's step. The composite in ops.nn stays as the oracle.
# The Jacobian rstd * (I - 11^T/n - y y^T/n) is symmetric, so the vjp and jvp are one formula.
def _ln_rows(xp, x, axes):
    """``x`` as a C-contiguous (rows, n) NumPy array when ``axes`` are its trailing dims and
    it is a non-empty float32/float64 array; else None (the general code runs: float16 keeps
    NumPy's float32 accumulation in ``mean``)."""
    k = len(axes)
    if xp.__name__ != "numpy" or x.dtype.kind not in "fV" or x.dtype.itemsize < 4 or \
            x.size == 0 or tuple(axes) != tuple(range(x.ndim - k, x.ndim)):
        return None
    return xp.ascontiguousarray(x).reshape(-1, math.prod(x.shape[x.ndim - k:]))


def _ln_stats(np, x2, eps):
    """(x - mean, 1 / std, the weights 1/n) per row of ``x2``: the row sums are BLAS
    matrix-vector products and row dot products (``einsum``), which beat NumPy's reductions
    over a short last axis."""
    n = x2.shape[1]
    c = np.full(n, 1.0 / n, dtype=x2.dtype)
    d = x2 - (x2 @ c)[:, None]
    var = np.einsum("ij,ij->i", d, d) * x2.dtype.type(1.0 / n)
    return d, 1 / np.sqrt(var + x2.dtype.type(eps)), c


@kernel("layer_norm_rows")
def _layer_norm_rows(xp, x, axes, eps):
    """Layer norm over trailing axes of a float32/float64 NumPy array, row by row."""
    x2 = _ln_rows(xp, x, axes)
    if x2 is None:
        return None
    d, rstd, _ = _ln_stats(xp, x2, eps)
    d *= rstd[:, None]
    return d.reshape(x.shape)


def _layer_norm(xp, x, axes, eps):
    r = K.layer_norm_rows(xp, x, axes, eps)
    if r is not None:
        return r
    mu = xp.mean(x, axis=axes, keepdims=True)
    d = x - mu
    var = xp.mean(d * d, axis=axes, keepdims=True)
    d *= 1 / xp.sqrt(var + eps)
    return d


def _ln_apply(F, v, x, out, axes, eps):
    n = 1
    for a in axes:
        n *= x.shape[a]
    mu = F.sum(x, axes=axes, keepdims=True) * (1.0 / n)
    d = x - mu
    rstd = (F.sum(d * d, axes=axes, keepdims=True) * (1.0 / n) + eps) ** -0.5
    vm = F.sum(v, axes=axes, keepdims=True) * (1.0 / n)
    vy = F.sum(v * out, axes=axes, keepdims=True) * (1.0 / n)
    return (v - vm - out * vy) * rstd


def _ln_vjp_raw(F, v, x, out, axes, eps):
    r = K.layer_norm_vjp_rows(v, x, out, axes, eps)
    return _ln_apply(F, v, x, out, axes, eps) if r is None else r


@kernel("layer_norm_vjp_rows", whole=True)
def _ln_vjp_rows(v, x, out, axes, eps):
    """``_ln_apply`` on raw NumPy arrays of one shape and dtype, by rows."""
    if v.shape != x.shape or not v.dtype == x.dtype == out.dtype:
        return None
    xp = get_array_module(x)
    x2 = _ln_rows(xp, x, axes)
    return None if x2 is None else _ln_apply_rows(xp, x2, v, out, eps).reshape(x.shape)


def _ln_apply_rows(np, x2, v, out, eps):
    """``_ln_apply`` on raw NumPy rows: the same formula with the row sums as BLAS products."""
    _, rstd, c = _ln_stats(np, x2, eps)
    v2 = np.ascontiguousarray(v).reshape(x2.shape)
    y2 = np.ascontiguousarray(out).reshape(x2.shape)
    vm = v2 @ c
    vy = np.einsum("ij,ij->i", v2, y2) * x2.dtype.type(1.0 / x2.shape[1])
    r = np.multiply(y2, vy[:, None])
    np.subtract(v2, r, out=r)
    r -= vm[:, None]
    r *= rstd[:, None]
    return r


layer_norm = Primitive("layer_norm", _layer_norm, save="in,out", vjp=[_ln_apply],
                       vjp_raw=[_ln_vjp_raw], jvp=[_ln_apply], kind="fused",
    shape=like_input)
