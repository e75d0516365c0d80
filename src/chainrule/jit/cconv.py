"""Backend "c": the stride-1 2-d convolution (``conv``'s flat-layout fast path) as one C loop
over the images, parallel with OpenMP, each image's im2col copy, matrix product and crop (with
the bias) done by one thread, the product by the BLAS NumPy itself calls.

The impl (``primitives/conv.py``, ``_conv_flat``) copies a chunk of images' columns with one
NumPy copy, multiplies the chunk with one batched ``matmul`` (one ``sgemm``/``dgemm`` per
image) and crops with another copy, each on the calling thread; those products are too small
for OpenBLAS to spread over threads. Here each thread takes whole images: the same columns
(the flat layout: offset ``(i, j)`` of channel ``c`` is one contiguous run of the padded
image), the same product call with the same arguments (``M = O``, ``N = span``, ``K``, the
same leading dimensions) and the same crop and bias addition, so the result is bitwise the
impl's; only the order in which images are done differs.

The product is the ``cblas_?gemm`` of the OpenBLAS that NumPy's wheels bundle
(``scipy_cblas_sgemm64_``, 64-bit integers), found in ``numpy.libs``; without it (another
BLAS, another layout of NumPy) the impl runs. A call the loop does not cover (not 2 spatial
dims, a stride other than 1, groups, not float32/float64, another array module, fast paths
switched off, where the impl itself runs its general code) runs the impl too.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

from ..backend import np
from ..primitives.conv import _pad, out_size
from ..primitives.fast import fast_paths_enabled
from .render_c import per_float_type

PRIMS = ("conv",)

# work (multiply-adds) from which the images are spread over threads
_PARALLEL_MACS = 1 << 22

_C = """
typedef void (*NAME_gemm_t)(int, int, int, long long, long long, long long, T, const T *,
                            long long, const T *, long long, T, T *, long long);

/* y[n] = crop(w @ columns(xpad[n])) (+ b): 0, or -1 when a work buffer could not be had */
int NAME_conv_flat(void *gemm_, const void *xpad_, const void *w_, const void *b_, void *y_,
                   ptrdiff_t N, int C, int Hp, int Wp, int kh, int kw, int dh, int dw, int O,
                   int OH, int OW)
{
    const NAME_gemm_t gemm = (NAME_gemm_t)gemm_;
    const T *xpad = (const T *)xpad_;
    const T *w = (const T *)w_;
    const T *b = (const T *)b_;
    T *y = (T *)y_;
    const ptrdiff_t P = (ptrdiff_t)Hp * Wp, K = (ptrdiff_t)C * kh * kw;
    const ptrdiff_t full = (ptrdiff_t)OH * Wp, span = (ptrdiff_t)(OH - 1) * Wp + OW;
    int failed = 0;
    #pragma omp parallel if (N * O * K * span >= MACS) reduction(|:failed)
    {
        T *buf = (T *)malloc(sizeof(T) * (K * span + O * full));
        if (!buf) failed = 1;
        #pragma omp for schedule(static)
        for (ptrdiff_t n = 0; n < N; n++) {
            if (!buf) continue;
            T *yf = buf + K * span;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < kh; i++)
                    for (int j = 0; j < kw; j++)
                        memcpy(buf + ((ptrdiff_t)(c * kh + i) * kw + j) * span,
                               xpad + (n * C + c) * P + (ptrdiff_t)i * dh * Wp + j * dw,
                               sizeof(T) * span);
            gemm(101, 111, 111, O, span, K, (T)1, w, K, buf, span, (T)0, yf, full);
            for (int o = 0; o < O; o++) {
                T *yo = y + ((n * O + o) * OH) * OW;
                const T *src = yf + o * full;
                for (int r = 0; r < OH; r++) {
                    if (b) {
                        const T bo = b[o];
                        for (int c = 0; c < OW; c++) yo[r * OW + c] = src[r * Wp + c] + bo;
                    } else {
                        memcpy(yo + r * OW, src + r * Wp, sizeof(T) * OW);
                    }
                }
            }
        }
        free(buf);
    }
    return failed ? -1 : 0;
}
""".replace("MACS", str(_PARALLEL_MACS))

_DECL = """
int NAME_conv_flat(void *, const void *, const void *, const void *, void *, ptrdiff_t, int,
                   int, int, int, int, int, int, int, int, int);
"""

_T = {np.dtype(np.float32): ("f32", "scipy_cblas_sgemm64_"),
      np.dtype(np.float64): ("f64", "scipy_cblas_dgemm64_")}


def source() -> tuple[str, str]:
    """(declarations, C source) of the convolution loop for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "int f32_conv_flat(" in src and "f64_conv_flat(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C)
    return decl, "#include <stdlib.h>\n#include <string.h>\n" + src


@functools.cache
def gemm_pointers() -> dict:
    """``{dtype: address}`` of the ``cblas_?gemm`` in the OpenBLAS that NumPy's wheels bundle
    (empty when NumPy uses another BLAS or it is not found).

    Example:
        >>> isinstance(gemm_pointers(), dict)
        True
    """
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    found = {}
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            for dt, (_, sym) in _T.items():
                found[dt] = ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value
        except (OSError, AttributeError):
            found = {}
            continue
        break
    return found


def wrappers(lib, ffi) -> dict:
    """``{"conv": impl}``: the ``conv`` impl with its signature, running the C loop when it
    can, else the impl (``lib``, ``ffi``: the cffi module compiled from :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> conv = wrappers(mod.lib, mod.ffi)["conv"]  # doctest: +SKIP
        >>> conv(np, np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), None, stride=(1, 1),
        ...      padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)[0, 0]  # doctest: +SKIP
        array([[4., 4.],
               [4., 4.]])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impl as registered (lowp wrapper)

    impl = REGISTRY["conv"].impl
    gemms = gemm_pointers()
    fb, null = ffi.from_buffer, ffi.NULL

    def conv(xp, x, w, b, stride, padding, dilation, groups):
        def general():  # the impl itself
            return impl(xp, x, w, b, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)

        dt = getattr(x, "dtype", None)
        if (not fast_paths_enabled() or xp is not np or dt not in gemms
                or type(x) is not np.ndarray or x.ndim != 4
                or any(v != 1 for v in stride) or groups != 1 or w.dtype != dt
                or (b is not None and b.dtype != dt)):
            return general()
        xpad = np.ascontiguousarray(_pad(np, x, padding))
        w, b = np.ascontiguousarray(w), None if b is None else np.ascontiguousarray(b)
        n, c, hp, wp = xpad.shape
        o, _, kh, kw = w.shape
        oh, ow = out_size(x.shape[2:], (kh, kw), (1, 1), padding, dilation)
        if oh < 1 or ow < 1:
            return general()
        y = np.empty((n, o, oh, ow), dt)
        rc = getattr(lib, f"{_T[dt][0]}_conv_flat")(
            ffi.cast("void *", gemms[dt]), fb(xpad), fb(w), null if b is None else fb(b),
            fb(y, require_writable=True), n, c, hp, wp, kh, kw, dilation[0], dilation[1], o,
            oh, ow)
        if rc != 0:  # no memory for a thread's buffers: the impl, which raises if it must
            return general()
        return y

    return {"conv": conv}
