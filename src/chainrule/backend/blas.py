"""Level-1 BLAS from the OpenBLAS that NumPy's wheels bundle, through ctypes: ``y += a * x``
(``?axpy``) and ``y = x + b * y`` (``?axpby`` with ``a == 1``) in one pass over the memory,
for the optimisers' updates (``primitives/update.py``), where NumPy needs two ufunc calls
and a temporary.

The arithmetic is fixed by a probe when the library is first used, per dtype: ``axpy`` is
taken only when every element of a probe vector (vector body and scalar tail, a thread's
share and the whole) comes out as ``y + a * x`` rounded once (a fused multiply-add;
OpenBLAS's Haswell and SkylakeX kernels) or every element as NumPy's ``y + (a * x)``
rounded twice (older kernels); :func:`axpy_fused` says which. ``axpby`` is taken only where
it comes out bitwise as NumPy's ``y * b + x`` (OpenBLAS computes ``fma(a, x, b * y)``, which
with ``a == 1`` is exactly that), so the momentum buffer's arithmetic is NumPy's on every
machine. Without NumPy's OpenBLAS (another BLAS, another array module) or when a probe
fails, the functions return False and the caller does the NumPy passes.
``CHAINRULE_BLAS_UPDATE=0`` (read once) turns both off; ``blas.ENABLED = False`` too, from
then on (A/B timing only: backend c's update loop reads the setting when it is built).

Example:
    >>> import numpy as np
    >>> from chainrule.backend import blas
    >>> y, x = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
    >>> if not blas.axpy(-0.5, x, y):  # not taken here: NumPy's passes
    ...     y -= 0.5 * x
    >>> y
    array([0., 0., 0., 0., 0.], dtype=float32)
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from fractions import Fraction

import numpy as np

__all__ = ["axpby1", "axpy", "axpy_fused"]

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_PTR = ctypes.c_void_p
_CHAR = ctypes.c_char.from_buffer
_ADDR = ctypes.addressof
ENABLED = True  # off: axpy and axpby1 return False (A/B timing; see the module text)
_SYMS = {_F32: ("s", ctypes.c_float), _F64: ("d", ctypes.c_double)}


def numpy_openblas(symbols=()):
    """NumPy's bundled OpenBLAS (``numpy.libs/libscipy_openblas64_*``) loaded with ctypes,
    the first that exports every name in ``symbols``; None if there is none (a NumPy built
    against another BLAS, or from source).

    Example:
        >>> lib = numpy_openblas(["scipy_cblas_saxpy64_"])
        >>> lib is None or hasattr(lib, "scipy_cblas_saxpy64_")
        True
    """
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            for sym in symbols:
                getattr(lib, sym)
        except (OSError, AttributeError):
            continue
        return lib
    return None


@functools.cache
def _library():
    """NumPy's bundled OpenBLAS, or None (also with ``CHAINRULE_BLAS_UPDATE=0``)."""
    if os.environ.get("CHAINRULE_BLAS_UPDATE", "1") == "0":
        return None
    return numpy_openblas()


def _function(kind: str, dtype):
    """The ctypes function ``scipy_cblas_?{kind}64_`` for ``dtype``, or None."""
    lib = _library()
    if lib is None:
        return None
    prefix, ct = _SYMS[dtype]
    try:
        fn = getattr(lib, f"scipy_cblas_{prefix}{kind}64_")
    except AttributeError:
        return None
    i64 = ctypes.c_int64
    fn.restype = None
    fn.argtypes = ([i64, ct, _PTR, i64, _PTR, i64] if kind == "axpy"
                   else [i64, ct, _PTR, i64, ct, _PTR, i64])
    return fn


def _probe(dtype, n):
    """``(x, y, y + a * x rounded once, rounded twice)`` on probe values in [1, 2) (where, in
    float32, ``y + a * x`` is exact in float64, so rounding it to float32 rounds once)."""
    rng = np.random.default_rng(12345)
    x, y = (rng.uniform(1, 2, n).astype(dtype) for _ in range(2))
    a = _A[dtype]
    if dtype == _F32:
        once = (y.astype(np.float64) + float(a) * x.astype(np.float64)).astype(dtype)
    else:  # exactly, in fractions, then rounded once by float()
        fa = Fraction(float(a))
        once = np.array([float(Fraction(float(yi)) + fa * Fraction(float(xi)))
                         for xi, yi in zip(x, y)])
    return x, y, once, y + x * a


_A = {_F32: _F32.type(-1.2345678901234567), _F64: _F64.type(-1.2345678901234567)}
_SIZES = (67, 1, 7, 20011)  # body and tail (decides); a tail alone; threaded from 10000


@functools.cache
def _axpy(dtype):
    """``(function, fused)`` for ``dtype`` once the probe has passed, else None."""
    fn = _function("axpy", dtype)
    if fn is None:
        return None
    fused = None
    for n in _SIZES:
        x, y, once, twice = _probe(dtype, 1000 if n == 20011 and dtype == _F64 else n)
        if n == 20011 and dtype == _F64:  # the exact sums only where they are cheap
            x, y = np.resize(x, n), np.resize(y, n)
            once, twice = np.resize(once, n), y + x * _A[dtype]
        got = y.copy()
        fn(n, float(_A[dtype]), x.ctypes.data, 1, got.ctypes.data, 1)
        if fused is None:
            if np.array_equal(once, twice):  # the probe must tell the two apart
                return None
            fused = np.array_equal(got, once)
        if not np.array_equal(got, once if fused else twice):
            return None
    return fn, fused


@functools.cache
def _axpby(dtype):
    """The ``?axpby`` function for ``dtype`` when ``axpby(1, x, b, y)`` is bitwise NumPy's
    ``y * b + x`` on the probe, else None."""
    fn = _function("axpby", dtype)
    if fn is None:
        return None
    b = dtype.type(0.9)
    for n in _SIZES:
        x, y, _, _ = _probe(dtype, min(n, 67))
        x, y = np.resize(x, n), np.resize(y, n)
        got = y.copy()
        fn(n, 1.0, x.ctypes.data, 1, float(b), got.ctypes.data, 1)
        if not np.array_equal(got, y * b + x):
            return None
    return fn


def axpy_fused(dtype) -> bool | None:
    """True when :func:`axpy` on ``dtype`` rounds ``y + a * x`` once (a fused multiply-add),
    False when it rounds twice as NumPy does, None when it is not taken for ``dtype`` (no
    BLAS, a failed probe, another dtype, ``ENABLED`` off).

    Example:
        >>> import numpy as np
        >>> axpy_fused(np.dtype(np.int32)) is None
        True
    """
    dtype = np.dtype(dtype)
    if dtype not in _SYMS or not ENABLED:
        return None
    found = _axpy(dtype)
    return None if found is None else found[1]


def _pointers(x, y):
    """The addresses of ``x`` and ``y`` when both are C-contiguous NumPy float32/float64
    arrays of one shape and dtype, ``y`` writable and ``x`` either ``y``'s memory or apart
    from it; else None."""
    if (type(y) is not np.ndarray or type(x) is not np.ndarray or y.dtype not in _SYMS
            or x.dtype != y.dtype or x.shape != y.shape or not y.flags.c_contiguous
            or not x.flags.c_contiguous or not y.flags.writeable or not y.size):
        return None
    py = _ADDR(_CHAR(y))
    px = _ADDR(_CHAR(x)) if x.flags.writeable else x.ctypes.data
    if px != py and px < py + y.nbytes and py < px + x.nbytes:
        return None
    return px, py


def _taken(number, x, y, find):
    """``(what find(dtype) found, x's address, y's address)`` where a call on ``x`` and ``y``
    with the Python number ``number`` is taken, else None."""
    if type(number) not in (int, float) or not ENABLED:
        return None
    ptrs = _pointers(x, y)
    found = ptrs and find(y.dtype)
    return (found, *ptrs) if found else None


def axpy(a, x, y) -> bool:
    """``y += a * x`` in place as one BLAS call (``a`` a Python number, taken in ``y``'s dtype
    as NumPy takes a Python number); False, with ``y`` untouched, where it is not taken
    (see the module text; the caller then does it with NumPy).

    Example:
        >>> import numpy as np
        >>> y = np.zeros(3)
        >>> if not axpy(2.0, np.ones(3), y):
        ...     y += 2.0 * np.ones(3)
        >>> y
        array([2., 2., 2.])
    """
    call = _taken(a, x, y, _axpy)
    if call is not None:
        call[0][0](y.size, a, call[1], 1, call[2], 1)
    return call is not None


def axpby1(x, b, y) -> bool:
    """``y = y * b + x`` in place as one BLAS call, bitwise NumPy's two passes (``b`` a Python
    number); False, with ``y`` untouched, where it is not taken.

    Example:
        >>> import numpy as np
        >>> y = np.ones(3, np.float32)
        >>> if not axpby1(np.ones(3, np.float32), 0.5, y):
        ...     y *= 0.5
        ...     y += 1
        >>> y
        array([1.5, 1.5, 1.5], dtype=float32)
    """
    call = _taken(b, x, y, _axpby)
    if call is not None:
        call[0](y.size, 1.0, call[1], 1, b, call[2], 1)
    return call is not None
