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

The backward convolutions of a 2-d convolution with one group (any stride, padding and
dilation) are C loops over the images too, on the compact im2col layout (one run of output
columns per channel, kernel offset and output row, zeros for the padding, nothing padded
beforehand). ``conv_weight``: the images are cut into fixed runs, and each run's images add
``columns(x[n]) @ y[n]^T`` into that run's own partial (``sgemm`` with beta 1), whichever
thread takes it; the partials are added in run order at the end.
``conv_transpose``: each thread computes ``w^T @ y[n]`` and scatter-adds it (col2im) into
image ``n``'s own output, then the bias. Neither is bitwise the impl (another order of
additions); both give the same bits run to run and at any thread count. Where the images are
spread over threads and one image's product is big enough for OpenBLAS to thread it, OpenBLAS
is held at one thread for the call. ``TAKEN`` counts the calls each loop ran.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import threading

from ..backend import np
from ..backend.blas import numpy_openblas
from ..primitives.conv import _pad, out_size
from ..primitives.fast import fast_paths_enabled
from .render_c import per_float_type

PRIMS = ("conv", "conv_weight", "conv_transpose")

# calls that ran a C loop, by primitive (tests read it to see that the loop was taken)
TAKEN: collections.Counter = collections.Counter()

# work (multiply-adds) from which the images are spread over threads
_PARALLEL_MACS = 1 << 22
# conv_weight's fixed runs of images, each summed into its own partial
_WEIGHT_RUNS = 16
# OpenBLAS threads a product of more multiply-adds than this (interface/gemm.c:
# SMP_THRESHOLD_MIN 65536 times the default GEMM_MULTITHREAD_THRESHOLD 4)
_BLAS_THREADED = 65536 * 4

# the window loops' column range (cpool's loops use it too, under another name)
INSIDE_C = """
/* [q0, q1): the outputs q whose input column q * sw + ow0 lies in [0, W) */
static void NAME_inside(int ow0, int sw, int W, int OW, int *q0, int *q1)
{
    int a = ow0 < 0 ? (-ow0 + sw - 1) / sw : 0;
    int b = W - 1 - ow0 < 0 ? 0 : (W - 1 - ow0) / sw + 1;
    if (b > OW) b = OW;
    if (a > b) a = b;
    *q0 = a;
    *q1 = b;
}
"""

_C = INSIDE_C + """
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
        #pragma omp for schedule(dynamic, 1)
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

/* One image's columns in the compact layout: cols[(c, i, j), (r, q)] =
   x[c, r * sh + i * dh - ph, q * sw + j * dw - pw], 0 where that lies in the padding. */
static void NAME_im2col(const T *x, int C, int H, int W, int kh, int kw, int sh, int sw,
                        int ph, int pw, int dh, int dw, int OH, int OW, T *cols)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++) {
                T *dst = cols + ((ptrdiff_t)(c * kh + i) * kw + j) * OH * OW;
                const int ow0 = j * dw - pw;
                int q0, q1;
                NAME_inside(ow0, sw, W, OW, &q0, &q1);
                for (int r = 0; r < OH; r++) {
                    T *d = dst + (ptrdiff_t)r * OW;
                    const int ih = r * sh + i * dh - ph;
                    if (ih < 0 || ih >= H) {
                        memset(d, 0, sizeof(T) * OW);
                        continue;
                    }
                    const T *src = x + ((ptrdiff_t)c * H + ih) * W + ow0;
                    for (int q = 0; q < q0; q++) d[q] = 0;
                    if (sw == 1)
                        memcpy(d + q0, src + q0, sizeof(T) * (q1 - q0));
                    else
                        for (int q = q0; q < q1; q++) d[q] = src[(ptrdiff_t)q * sw];
                    for (int q = q1; q < OW; q++) d[q] = 0;
                }
            }
}

/* The adjoint of NAME_im2col: z[c, ...] += cols[(c, i, j), (r, q)] (padding dropped). */
static void NAME_col2im(const T *cols, int C, int H, int W, int kh, int kw, int sh, int sw,
                        int ph, int pw, int dh, int dw, int OH, int OW, T *z)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++) {
                const T *src = cols + ((ptrdiff_t)(c * kh + i) * kw + j) * OH * OW;
                const int ow0 = j * dw - pw;
                int q0, q1;
                NAME_inside(ow0, sw, W, OW, &q0, &q1);
                for (int r = 0; r < OH; r++) {
                    const int ih = r * sh + i * dh - ph;
                    if (ih < 0 || ih >= H) continue;
                    const T *s = src + (ptrdiff_t)r * OW;
                    T *d = z + ((ptrdiff_t)c * H + ih) * W + ow0;
                    if (sw == 1)
                        for (int q = q0; q < q1; q++) d[q] += s[q];
                    else
                        for (int q = q0; q < q1; q++) d[(ptrdiff_t)q * sw] += s[q];
                }
            }
}

/* dw[o, (c, i, j)] = sum_n sum_l y[n, o, l] * cols_n[(c, i, j), l]. The images are cut into
   G = min(N, GROUPS) fixed runs; each run's images are summed in order into that run's own
   (K, O) partial (cols_n @ y_n^T, beta 1) by whichever thread takes it, and the partials are
   added in run order at the end: the same sums whatever the number of threads or which
   thread took which run. 0, or -1 when a buffer could not be had. */
int NAME_conv_weight(void *gemm_, const void *x_, const void *y_, void *dw_, ptrdiff_t N,
                     int C, int H, int W, int O, int kh, int kw, int sh, int sw, int ph,
                     int pw, int dh, int dw, int OH, int OW)
{
    const NAME_gemm_t gemm = (NAME_gemm_t)gemm_;
    const T *x = (const T *)x_;
    const T *y = (const T *)y_;
    T *out = (T *)dw_;
    const ptrdiff_t K = (ptrdiff_t)C * kh * kw, L = (ptrdiff_t)OH * OW;
    const ptrdiff_t G = N < GROUPS ? N : GROUPS;
    T *parts = (T *)calloc((size_t)(G > 0 ? G : 1) * K * O, sizeof(T));
    if (!parts) return -1;
    int failed = 0;
    #pragma omp parallel if (N * O * K * L >= MACS) reduction(|:failed)
    {
        T *cols = (T *)malloc(sizeof(T) * K * L);
        if (!cols) failed = 1;
        #pragma omp for schedule(dynamic, 1)
        for (ptrdiff_t g = 0; g < G; g++) {
            if (!cols) continue;
            T *part = parts + g * K * O;
            for (ptrdiff_t n = g * N / G; n < (g + 1) * N / G; n++) {
                NAME_im2col(x + n * C * H * W, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH,
                            OW, cols);
                gemm(101, 111, 112, K, O, L, (T)1, cols, L, y + n * O * L, L, (T)1, part, O);
            }
        }
        free(cols);
    }
    if (!failed)
        for (int o = 0; o < O; o++)
            for (ptrdiff_t k = 0; k < K; k++) {
                T s = parts[k * O + o];
                for (ptrdiff_t g = 1; g < G; g++) s += parts[(g * K + k) * O + o];
                out[o * K + k] = s;
            }
    free(parts);
    return failed ? -1 : 0;
}

/* z[n] = col2im(w^T @ y[n]) (+ b): each image's product and scatter-add by one thread, into
   that image's own output. 0, or -1 when a work buffer could not be had. */
int NAME_conv_transpose(void *gemm_, const void *y_, const void *w_, const void *b_, void *z_,
                        ptrdiff_t N, int C, int H, int W, int O, int kh, int kw, int sh,
                        int sw, int ph, int pw, int dh, int dw, int OH, int OW)
{
    const NAME_gemm_t gemm = (NAME_gemm_t)gemm_;
    const T *y = (const T *)y_;
    const T *w = (const T *)w_;
    const T *b = (const T *)b_;
    T *z = (T *)z_;
    const ptrdiff_t K = (ptrdiff_t)C * kh * kw, L = (ptrdiff_t)OH * OW, P = (ptrdiff_t)H * W;
    int failed = 0;
    #pragma omp parallel if (N * O * K * L >= MACS) reduction(|:failed)
    {
        T *cols = (T *)malloc(sizeof(T) * K * L);
        if (!cols) failed = 1;
        #pragma omp for schedule(dynamic, 1)
        for (ptrdiff_t n = 0; n < N; n++) {
            if (!cols) continue;
            T *zn = z + n * C * P;
            gemm(101, 112, 111, K, L, O, (T)1, w, K, y + n * O * L, L, (T)0, cols, L);
            memset(zn, 0, sizeof(T) * C * P);
            NAME_col2im(cols, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, zn);
            if (b)
                for (int c = 0; c < C; c++)
                    for (ptrdiff_t p = 0; p < P; p++) zn[c * P + p] += b[c];
        }
        free(cols);
    }
    return failed ? -1 : 0;
}
""".replace("MACS", str(_PARALLEL_MACS)).replace("GROUPS", str(_WEIGHT_RUNS))

_DECL = """
int NAME_conv_flat(void *, const void *, const void *, const void *, void *, ptrdiff_t, int,
                   int, int, int, int, int, int, int, int, int);
int NAME_conv_weight(void *, const void *, const void *, void *, ptrdiff_t, int, int, int,
                     int, int, int, int, int, int, int, int, int, int, int);
int NAME_conv_transpose(void *, const void *, const void *, const void *, void *, ptrdiff_t,
                        int, int, int, int, int, int, int, int, int, int, int, int, int,
                        int);
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
    return decl, "#include <omp.h>\n#include <stdlib.h>\n#include <string.h>\n" + src


@functools.cache
def gemm_pointers() -> dict:
    """``{dtype: address}`` of the ``cblas_?gemm`` in the OpenBLAS that NumPy's wheels bundle
    (empty when NumPy uses another BLAS or it is not found).

    Example:
        >>> isinstance(gemm_pointers(), dict)
        True
    """
    lib = _openblas()
    if lib is None:
        return {}
    return {dt: ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value
            for dt, (_, sym) in _T.items()}


@functools.cache
def _openblas():
    """The OpenBLAS in ``numpy.libs`` exporting both ``cblas_?gemm`` (None if none does)."""
    return numpy_openblas([sym for _, sym in _T.values()])


@functools.cache
def blas_threads():
    """``(get, set)``: ctypes functions reading and setting the thread count of NumPy's
    bundled OpenBLAS (None when it is not found).

    Example:
        >>> bt = blas_threads()
        >>> bt is None or bt[0]() >= 1
        True
    """
    lib = _openblas()
    if lib is None:
        return None
    try:
        get, set_ = (lib.scipy_openblas_get_num_threads64_,
                     lib.scipy_openblas_set_num_threads64_)
    except AttributeError:
        return None
    get.restype, get.argtypes = ctypes.c_int, []
    set_.restype, set_.argtypes = None, [ctypes.c_int]
    return get, set_


# C loops holding OpenBLAS at one thread now (several Python threads may run them at once),
# and OpenBLAS's thread count before the first of them
_BLAS_HELD = [0, 1]
_BLAS_LOCK = threading.Lock()


@contextlib.contextmanager
def one_blas_thread(hold: bool = True):
    """Within the block, NumPy's OpenBLAS runs on one thread (when ``hold`` and
    :func:`blas_threads` can set it): for C loops whose OpenMP threads each call its
    ``cblas_?gemm``, where a product big enough for OpenBLAS to thread would otherwise start
    its own threads from each of ours. Blocks running at once in several Python threads
    count themselves under a lock; the last one out sets the count back.

    Example:
        >>> with one_blas_thread():
        ...     inside = blas_threads()[0]() if blas_threads() else 1
        >>> inside
        1
    """
    calls = blas_threads() if hold else None
    if calls is None:
        yield
        return
    get, put = calls
    with _BLAS_LOCK:
        if _BLAS_HELD[0] == 0:
            _BLAS_HELD[1] = get()
            if _BLAS_HELD[1] > 1:
                put(1)
        _BLAS_HELD[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_HELD[0] -= 1
            if _BLAS_HELD[0] == 0 and _BLAS_HELD[1] > 1:
                put(_BLAS_HELD[1])


def wrappers(lib, ffi) -> dict:
    """``{name: impl}`` for :data:`PRIMS`: each impl with its signature, running its C loop
    when it can, else the impl (``lib``, ``ffi``: the cffi module compiled from
    :func:`source`).

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

    impls = {k: REGISTRY[k].impl for k in PRIMS}
    gemms = {dt: ffi.cast("void *", p) for dt, p in gemm_pointers().items()}  # cast once
    fb, null = ffi.from_buffer, ffi.NULL

    def conv(xp, x, w, b, stride, padding, dilation, groups):
        def general():  # the impl itself
            return impls["conv"](xp, x, w, b, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups)

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
        span = (oh - 1) * wp + ow
        if not call("conv_flat", dt, n, o * span * c * kh * kw, fb(xpad), fb(w),
                    null if b is None else fb(b), fb(y, require_writable=True), n, c, hp, wp,
                    kh, kw, dilation[0], dilation[1], o, oh, ow):
            return general()  # no memory for a thread's buffers: the impl raises if it must
        return y

    def call(name, dt, n, macs, *args):
        """Run the C loop ``name`` over ``n`` images of ``macs`` multiply-adds each; False
        when it could not have its buffers. Where the images are spread over threads and
        each product is big enough for OpenBLAS to thread it as well, OpenBLAS is held at
        one thread for the call (threads inside threads fight for the cores)."""
        with one_blas_thread(n * macs >= _PARALLEL_MACS and macs > _BLAS_THREADED):
            rc = getattr(lib, f"{_T[dt][0]}_{name}")(gemms[dt], *args)
        if rc == 0:
            TAKEN[name] += 1
        return rc == 0

    def conv_weight(xp, x, y, stride, padding, dilation, groups, kernel):
        dt = getattr(x, "dtype", None)
        if dt in gemms and _covered(xp, (x, y), dt, groups, padding) and len(kernel) == 2:
            n, c, h, w_ = x.shape
            o, oh, ow = y.shape[1:]
            if y.shape[0] == n and _fits((h, w_), kernel, stride, padding, dilation, (oh, ow)):
                x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
                dw = np.empty((o, c) + tuple(kernel), dt)
                if call("conv_weight", dt, n, o * c * kernel[0] * kernel[1] * oh * ow,
                        fb(x), fb(y), fb(dw, require_writable=True), n, c,
                        h, w_, o, *kernel, *stride, padding[0][0], padding[1][0], *dilation,
                        oh, ow):
                    return dw
        return impls["conv_weight"](xp, x, y, stride=stride, padding=padding,
                                    dilation=dilation, groups=groups, kernel=kernel)

    def conv_transpose(xp, y, w, b, stride, padding, dilation, groups, size):
        dt = getattr(y, "dtype", None)
        args = (y, w) if b is None else (y, w, b)
        if dt in gemms and _covered(xp, args, dt, groups, padding) and len(size) == 2:
            n, o, oh, ow = y.shape
            c, kh, kw = w.shape[1:]
            if (w.shape[0] == o and (b is None or b.shape == (c,))
                    and _fits(size, (kh, kw), stride, padding, dilation, (oh, ow))):
                y, w = np.ascontiguousarray(y), np.ascontiguousarray(w)
                b = None if b is None else np.ascontiguousarray(b)
                z = np.empty((n, c) + tuple(size), dt)
                if call("conv_transpose", dt, n, o * c * kh * kw * oh * ow, fb(y), fb(w),
                        null if b is None else fb(b), fb(z, require_writable=True), n, c,
                        *size, o, kh, kw, *stride, padding[0][0], padding[1][0], *dilation,
                        oh, ow):
                    return z
        return impls["conv_transpose"](xp, y, w, b, stride=stride, padding=padding,
                                       dilation=dilation, groups=groups, size=size)

    return {"conv": conv, "conv_weight": conv_weight, "conv_transpose": conv_transpose}


def _covered(xp, arrays, dt, groups, padding) -> bool:
    """Whether the backward loops cover a call: NumPy arrays of 4 dims (bias 1) in one float
    type, one group, no negative padding, fast paths on."""
    return (fast_paths_enabled() and xp is np and groups == 1
            and all(type(a) is np.ndarray and a.dtype == dt for a in arrays)
            and all(a.ndim == 4 for a in arrays[:2])
            and all(lo >= 0 and hi >= 0 for lo, hi in padding))


def _fits(size, kernel, stride, padding, dilation, out) -> bool:
    """Whether ``out`` windows lie inside the padded ``size`` (the impls' own view checks
    the rest, and raise) and none is empty."""
    return all(m >= 1 and n >= 1 and (m - 1) * s + (k - 1) * d + 1 <= n + lo + hi
               for n, k, s, (lo, hi), d, m in zip(size, kernel, stride, padding, dilation, out))
