"""Activation primitives with kernels of their own: the exact GELU (``gelu``,
``gelu_backward``).

``gelu(x)`` and ``gelu_backward(g, x, y)``
    The exact GELU, x Phi(x), and its vjp g (Phi(x) + x phi(x)) (``y = gelu(x)`` is passed
    in so that Phi = y / x is not recomputed; it carries no derivative of its own). float32
    on NumPy runs block by block in cache-sized, in-place passes (the fast-path kernels
    ``gelu`` and ``gelu_backward``), with Phi = (1 + tanh(u))/2 and u a polynomial fitted for
    this file (absolute error of Phi below 1.7e-7, the order of float32 rounding of PyTorch's
    1 + erf); the composite (SciPy's erf, then eight full-size passes in backward) made GELU a
    third of the transformer step. Other dtypes use SciPy's ndtr (or erf) exactly.

Example:
    >>> import numpy as np
    >>> from chainrule.primitives import RAW
    >>> RAW.gelu(np.array([-100.0, 0.0, 1.0], dtype=np.float32)).tolist()
    [-0.0, 0.0, 0.8413447141647339]
"""

from __future__ import annotations

import math

from ..backend import threads
from .core import Primitive
from .fast import K, kernel
from .shapes import elementwise, promoted, same_dtype

# the kernels split their work over the shared pool (chainrule.backend.threads)
_MIN_WORK = threads.MIN_WORK

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Phi(x) = (1 + tanh(u)) / 2 with u = atanh(2 Phi(x) - 1) = h S(h^2), h = x / 2, S a
# polynomial (coefficients low to high) fitted for this file: weighted least squares on
# |x| <= 6.5 with Lawson reweighting towards the minimax fit of the error in Phi (so the fit
# may be loose where tanh is flat), and u pushed up past 10 by |x| = 5.501, where NumPy's
# float32 tanh returns exactly 1. Evaluated in float32 the absolute error of Phi stays below
# 1.7e-7 (checked in the tests); past 5.501 GELU's tails are exactly -0 and x. S is
# increasing on x >= 0, so no clamp is needed (x^2 overflowing to inf gives tanh = +-1).
# 18 elementwise passes against 27 for the rational Phi this replaced.
_S = (1.59577214717865, 0.29062190651893616, -0.0008419185178354383,
      -0.0074310870841145515, 0.002293175086379051, -0.0003549647517502308,
      2.3677443095948547e-05)
_BLOCK = 1 << 16  # elements per block: its buffers stay in L2 (faster than 1 << 15)
# below |x| = 1e-18 (x^2 < _TINY2, still a normal float32) the backward takes Phi(x) as
# 1/2, which it is to float32 precision there (y / x is unreliable for tiny x, nan at 0)
_TINY2 = 1e-36


def _blocks(np, lo, hi):
    for s in range(lo, hi, _BLOCK):
        yield s, min(s + _BLOCK, hi)


def _gelu_f32(np, xs, r, h, w):
    """GELU(xs) into r for one float32 block (h, w: scratch of the block's size)."""
    f = np.float32
    s = [f(c) for c in _S]
    np.multiply(xs, f(0.5), out=h)
    np.multiply(h, h, out=w)
    np.multiply(w, s[-1], out=r)
    for c in s[-2:0:-1]:
        r += c
        r *= w
    r += s[0]
    r *= h  # u
    np.tanh(r, out=r)
    r += f(1.0)
    r *= h


def _scratch(np, n, k):
    m = min(n, _BLOCK)
    return [np.empty(m, dtype=np.float32) for _ in range(k)]


def _exact_phi(xp, x):
    """Phi(x) to the dtype's precision (float64 paths, CuPy)."""
    if xp.__name__ != "numpy":
        import cupyx.scipy.special as cps  # noqa: PLC0415

        return cps.ndtr(x)
    try:
        from scipy.special import ndtr  # noqa: PLC0415
    except ImportError:  # pragma: no cover - exercised where SciPy is absent
        from ..backend.special import erf  # noqa: PLC0415

        return (erf(xp, x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5
    return ndtr(x).astype(x.dtype, copy=False)


def _fast(xp, *arrays) -> bool:
    return xp.__name__ == "numpy" and all(a.dtype == xp.float32 for a in arrays)


def _gelu(xp, x):
    y = K.gelu(xp, x)
    return x * _exact_phi(xp, x) if y is None else y


@kernel("gelu")
def _gelu_f32_blocks(xp, x):
    """GELU of a float32 NumPy array, block by block; None (declined) for anything else."""
    if not _fast(xp, x):
        return None
    src = xp.ascontiguousarray(x).reshape(-1)
    out = xp.empty(src.shape, dtype=xp.float32)

    def part(lo, hi):
        h, w = _scratch(xp, hi - lo, 2)
        for a, b in _blocks(xp, lo, hi):
            k = b - a
            _gelu_f32(xp, src[a:b], out[a:b], h[:k], w[:k])

    threads.parallel(part, src.size, _MIN_WORK)
    return out.reshape(x.shape)


def _gelu_backward(xp, g, x, y):
    """g * GELU'(x) = g * (Phi(x) + x phi(x)); ``y`` = GELU(x) gives Phi = y / x."""
    r = K.gelu_backward(xp, g, x, y)
    if r is None:
        return g * (_exact_phi(xp, x) + x * (xp.exp(x * x * -0.5) * _INV_SQRT_2PI))
    return r


@kernel("gelu_backward")
def _gelu_backward_f32_blocks(xp, g, x, y):
    """``_gelu_backward`` for float32 NumPy arrays of one shape, block by block; None
    (declined) for anything else."""
    if not _fast(xp, g, x, y) or g.shape != x.shape:
        return None
    f = xp.float32
    gs, xs_all, ys = (xp.ascontiguousarray(a).reshape(-1) for a in (g, x, y))
    out = xp.empty(xs_all.shape, dtype=xp.float32)

    def part(lo, hi):
        (w,) = _scratch(xp, hi - lo, 1)
        with xp.errstate(divide="ignore", invalid="ignore"):
            for a, b in _blocks(xp, lo, hi):
                r, xs, ww = out[a:b], xs_all[a:b], w[:b - a]
                xp.divide(ys[a:b], xs, out=r)  # Phi
                xp.multiply(xs, xs, out=ww)
                if not ww.min() >= f(_TINY2):  # rare (or a NaN): one extra pass only then
                    xp.copyto(r, f(0.5), where=ww < f(_TINY2))
                ww *= f(-0.5)
                xp.exp(ww, out=ww)
                ww *= xs
                ww *= f(_INV_SQRT_2PI)
                r += ww
                r *= gs[a:b]

    threads.parallel(part, xs_all.size, _MIN_WORK)
    return out.reshape(x.shape)


def _gelu_second(F, g, x):
    """g * GELU''(x) = g * phi(x) (2 - x^2)."""
    return g * (F.exp(x * x * -0.5) * _INV_SQRT_2PI) * (2.0 - x * x)


gelu = Primitive(
    "gelu", _gelu, save="in,out",
    vjp=[lambda F, g, x, out: F.gelu_backward(g, x, out)],
    jvp=[lambda F, t, x, out: F.gelu_backward(t, x, out)], kind="elementwise",
    shape=elementwise(None, same_dtype()))

# ``y`` must be gelu(x): it only saves the impl recomputing Phi, so it carries no derivative
gelu_backward = Primitive(
    "gelu_backward", _gelu_backward, save="in",
    vjp=[lambda F, g2, g, x, y, out: F.gelu_backward(g2, x, y),
         lambda F, g2, g, x, y, out: _gelu_second(F, g2 * g, x),
         None],
    jvp=[lambda F, t, g, x, y, out: F.gelu_backward(t, x, y),
         lambda F, t, g, x, y, out: _gelu_second(F, t * g, x),
         None], kind="elementwise",
    shape=elementwise(None, promoted))
