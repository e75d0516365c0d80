"""Backend "c": 2-d max pooling and its backward (``max_pool``, ``max_pool_index``,
``window_scatter``) as C loops over the (image, channel) planes, on OpenMP's threads.

The impls (``primitives/conv.py``) are NumPy passes on the calling thread: one
``maximum`` per kernel offset over strided views of the padded input, one comparison and
update per offset for the index of each window's maximum, and a zero-filled padded copy with
one masked write per offset for the scatter. In a LeNet step they took a quarter of the step
at one thread, and they ran on one core while the convolutions around them ran on two (issue
12: the second core bought 2%). Here each loop takes the planes in chunks of
:data:`CHUNK` (``schedule(dynamic)``: on a shared host a descheduled thread holds one chunk,
not half the batch, as the convolution loops found), each row by row: the same operations per
element, in the impls' order of kernel offsets, so the results are bitwise the impls':

* ``max_pool``: ``acc = x[offset 0]``, then ``acc = maximum(acc, x[offset k])`` (NumPy's
  ``maximum``: a NaN operand is the result; of two equal values, the second); padding is
  ``-inf``.
* ``max_pool_index``: the row-major offset in its window of the first element equal to the
  window's maximum ``out`` (the last offset where none is); where ``out`` holds a NaN
  anywhere, every window's index is NumPy's ``argmax`` (its first NaN, or its first maximum),
  as the impl does. The check for a NaN is one more pass over ``out`` in the same parallel
  region.
* ``window_scatter``: the gradient ``g`` written (windows that do not overlap) or added
  (overlapping ones, offset by offset, as the impl adds) at each window's index, cropped to
  the unpadded size; where ``g`` is all finite the written value is ``g * (idx == k)``
  (``-0.0`` for a negative ``g`` elsewhere in a window, as the impl's multiply gives), else
  ``where(idx == k, g, 0)``.

The loops are branch-free where NumPy's are (a compare branch per element, mispredicted half
the time, made an earlier per-window version 6-9x slower than NumPy): ``maximum`` as
``maxss`` plus a NaN select, the first match as arithmetic on the comparisons, the scatter's
``idx == k`` factors from a table; 2 x 2 windows with stride 2 and no padding (LeNet's, most
CNNs') read each window's four elements in one pass over a pair of rows.

A call the loops do not cover (not 4-d NumPy arrays of float32/float64, negative padding, an
``int32`` index (more than 127 offsets), fast paths switched off, windows that do not fit)
runs the impl. ``TAKEN`` counts the calls each loop ran.
"""

from __future__ import annotations

import collections

from ..backend import np
from ..primitives.conv import _disjoint, out_size
from ..primitives.fast import fast_paths_enabled
from .cconv import INSIDE_C
from .render_c import C_PREFIX, PARALLEL_WORK, per_float_type

PRIMS = ("max_pool", "max_pool_index", "window_scatter")

# calls that ran a C loop, by primitive
TAKEN: collections.Counter = collections.Counter()

# element-operations (outputs x kernel offsets) from which the planes are spread over threads:
# render_c's threshold for fused kernels (waking a sleeping thread costs ~30-40 us here, the
# time of that much work); LeNet's first pooling (301k) goes parallel, its second (102k) not
PARALLEL = PARALLEL_WORK
# planes a thread takes at a time
CHUNK = 16
# False: every call runs the impl (benchmarks/ab_jit_threads.py's --pool numpy, for A/B)
LOOPS = True

_C = INSIDE_C.replace("NAME_inside", "NAME_pool_cols") + """
/* NumPy's maximum(a, b): a NaN operand is the result; of two equal values, b */
static inline T NAME_maxnp(T a, T b)
{
    const T m = a > b ? a : b;  /* maxss: b where either is NaN */
    return a != a ? a : m;
}

/* row k: the factors (idx == 0, 1, 2, 3) for idx k; row 4 (any other idx) zeros */
static const T NAME_onehot[5][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1},
                                     {0, 0, 0, 0}};

/* whether the windows are 2 x 2 with stride 2, inside the input (no padding): the loops
   then read each window's four elements in one pass over a pair of rows */
static int NAME_two(int H, int W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                    int dw, int OH, int OW)
{
    return kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1 && ph == 0
        && pw == 0 && 2 * OH <= H && 2 * OW <= W;
}

void NAME_max_pool(const void *x_, void *y_, ptrdiff_t NC, int H, int W, int kh, int kw,
                   int sh, int sw, int ph, int pw, int dh, int dw, int OH, int OW, int par)
{
    const T *x = (const T *)x_;
    T *y = (T *)y_;
    const int two = NAME_two(H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW);
    #pragma omp parallel for schedule(dynamic, CHUNK) if (par)
    for (ptrdiff_t p = 0; p < NC; p++) {
        const T *xp = x + p * H * W;
        for (int r = 0; r < OH && two; r++) {
            const T *r0 = xp + (ptrdiff_t)2 * r * W, *r1 = r0 + W;
            T *acc = y + (p * OH + r) * OW;
            #pragma omp simd
            for (int q = 0; q < OW; q++)
                acc[q] = NAME_maxnp(NAME_maxnp(NAME_maxnp(r0[2 * q], r0[2 * q + 1]),
                                               r1[2 * q]), r1[2 * q + 1]);
        }
        for (int r = 0; r < OH && !two; r++) {
            T *acc = y + (p * OH + r) * OW;
            for (int i = 0; i < kh; i++) {
                const int ih = r * sh + i * dh - ph;
                for (int j = 0; j < kw; j++) {
                    const int first = i == 0 && j == 0, ow0 = j * dw - pw;
                    int q0 = OW, q1 = OW;
                    if (ih >= 0 && ih < H) NAME_pool_cols(ow0, sw, W, OW, &q0, &q1);
                    else if (!first) continue;  /* maximum(acc, -inf) is acc */
                    const T *src = xp + (ptrdiff_t)ih * W + ow0;
                    if (first) {
                        #pragma omp simd
                        for (int q = 0; q < q0; q++) acc[q] = -INFINITY;
                        if (sw == 1)
                            #pragma omp simd
                            for (int q = q0; q < q1; q++) acc[q] = src[q];
                        else
                            #pragma omp simd
                            for (int q = q0; q < q1; q++) acc[q] = src[(ptrdiff_t)q * sw];
                        #pragma omp simd
                        for (int q = q1; q < OW; q++) acc[q] = -INFINITY;
                    } else if (sw == 1) {
                        #pragma omp simd
                        for (int q = q0; q < q1; q++) acc[q] = NAME_maxnp(acc[q], src[q]);
                    } else {
                        #pragma omp simd
                        for (int q = q0; q < q1; q++)
                            acc[q] = NAME_maxnp(acc[q], src[(ptrdiff_t)q * sw]);
                    }
                }
            }
        }
    }
}

/* idx[w] = the offset in window w of its first element equal to y[w] (kh * kw - 1 if
   none); where y holds a NaN, of its first NaN or else its first maximum (argmax) */
void NAME_max_pool_index(const void *x_, const void *y_, signed char *idx, ptrdiff_t NC,
                         int H, int W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                         int dw, int OH, int OW, int par)
{
    const T *x = (const T *)x_;
    const T *y = (const T *)y_;
    const ptrdiff_t total = NC * OH * OW;
    const int two = NAME_two(H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW);
    int nan = 0;
    #pragma omp parallel if (par)
    {
        #pragma omp for schedule(static) reduction(|:nan)
        for (ptrdiff_t i = 0; i < total; i++) nan |= y[i] != y[i];
        #pragma omp for schedule(dynamic, CHUNK)
        for (ptrdiff_t p = 0; p < NC; p++) {
            const T *xp = x + p * H * W;
            for (int r = 0; r < OH; r++) {
                const T *m = y + (p * OH + r) * OW;
                signed char *ix = idx + (p * OH + r) * OW;
                if (two && !nan) {
                    const T *r0 = xp + (ptrdiff_t)2 * r * W, *r1 = r0 + W;
                    #pragma omp simd
                    for (int q = 0; q < OW; q++) {  /* the first match, branch-free */
                        const int n0 = r0[2 * q] != m[q], n1 = r0[2 * q + 1] != m[q];
                        const int n2 = r1[2 * q] != m[q];
                        ix[q] = (signed char)(n0 * (1 + n1 * (1 + n2)));
                    }
                    continue;
                }
                if (nan) {  /* argmax over each window: its first NaN, else first maximum */
                    for (int q = 0; q < OW; q++) {
                        T best = 0;
                        int at = 0;
                        for (int k = 0; k < kh * kw; k++) {
                            const int ih = r * sh + (k / kw) * dh - ph;
                            const int iw = q * sw + (k % kw) * dw - pw;
                            const T v = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                ? xp[(ptrdiff_t)ih * W + iw] : -INFINITY;
                            if (k == 0 || v > best || (v != v && best == best)) {
                                best = v;
                                at = k;
                            }
                            if (best != best) break;
                        }
                        ix[q] = (signed char)at;
                    }
                    continue;
                }
                #pragma omp simd
                for (int q = 0; q < OW; q++) ix[q] = (signed char)(kh * kw - 1);
                for (int k = kh * kw - 2; k >= 0; k--) {  /* downwards: the first one wins */
                    const int i = k / kw, j = k % kw, ih = r * sh + i * dh - ph;
                    const int ow0 = j * dw - pw;
                    const signed char kk = (signed char)k;
                    int q0 = OW, q1 = OW;
                    if (ih >= 0 && ih < H) NAME_pool_cols(ow0, sw, W, OW, &q0, &q1);
                    else q1 = 0;  /* the whole row is padding: -inf */
                    if (q0 > q1) q0 = q1;
                    #pragma omp simd
                    for (int q = 0; q < q0; q++) ix[q] = m[q] == -INFINITY ? kk : ix[q];
                    const T *src = xp + (ptrdiff_t)ih * W + ow0;
                    if (sw == 1)
                        #pragma omp simd
                        for (int q = q0; q < q1; q++) ix[q] = src[q] == m[q] ? kk : ix[q];
                    else
                        #pragma omp simd
                        for (int q = q0; q < q1; q++)
                            ix[q] = src[(ptrdiff_t)q * sw] == m[q] ? kk : ix[q];
                    #pragma omp simd
                    for (int q = q1; q < OW; q++) ix[q] = m[q] == -INFINITY ? kk : ix[q];
                }
            }
        }
    }
}

/* z = the windows' gradients g put at their maxima idx (written where windows do not
   overlap, added offset by offset where they do), cropped to (H, W) */
void NAME_window_scatter(const void *g_, const signed char *idx, void *z_, ptrdiff_t NC,
                         int H, int W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
                         int dw, int OH, int OW, int disjoint, int par)
{
    const T *g = (const T *)g_;
    T *z = (T *)z_;
    const ptrdiff_t total = NC * OH * OW;
    const int two = NAME_two(H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW);
    int finite = 1;
    #pragma omp parallel if (par)
    {
        #pragma omp for schedule(static) reduction(&:finite)
        for (ptrdiff_t i = 0; i < total; i++) finite &= g[i] - g[i] == 0;
        #pragma omp for schedule(dynamic, CHUNK)
        for (ptrdiff_t p = 0; p < NC; p++) {
            T *zp = z + p * H * W;
            memset(zp, 0, sizeof(T) * H * W);
            for (int r = 0; r < OH && two; r++) {
                const T *gr = g + (p * OH + r) * OW;
                const signed char *ir = idx + (p * OH + r) * OW;
                T *z0 = zp + (ptrdiff_t)2 * r * W, *z1 = z0 + W;
                if (finite) {  /* g * (idx == k), the factors from a table: no branch */
                    for (int q = 0; q < OW; q++) {
                        const T *e = NAME_onehot[(unsigned char)ir[q] < 4 ? ir[q] : 4];
                        const T v = gr[q];
                        z0[2 * q] = v * e[0];
                        z0[2 * q + 1] = v * e[1];
                        z1[2 * q] = v * e[2];
                        z1[2 * q + 1] = v * e[3];
                    }
                    continue;
                }
                for (int q = 0; q < OW; q++) {  /* where(idx == k, g, 0) */
                    const int k = ir[q];
                    const T v = gr[q];
                    z0[2 * q] = k == 0 ? v : (T)0;
                    z0[2 * q + 1] = k == 1 ? v : (T)0;
                    z1[2 * q] = k == 2 ? v : (T)0;
                    z1[2 * q + 1] = k == 3 ? v : (T)0;
                }
            }
            for (int k = 0; k < kh * kw && !two; k++) {
                const int i = k / kw, j = k % kw, ow0 = j * dw - pw;
                for (int r = 0; r < OH; r++) {
                    const int ih = r * sh + i * dh - ph;
                    if (ih < 0 || ih >= H) continue;  /* cropped */
                    int q0, q1;
                    NAME_pool_cols(ow0, sw, W, OW, &q0, &q1);
                    const T *gr = g + (p * OH + r) * OW;
                    const signed char *ir = idx + (p * OH + r) * OW;
                    T *dst = zp + (ptrdiff_t)ih * W + ow0;
                    #pragma omp simd
                    for (int q = q0; q < q1; q++) {
                        const int hit = ir[q] == k;
                        const T part = finite ? gr[q] * (T)hit : (hit ? gr[q] : (T)0);
                        if (disjoint) dst[(ptrdiff_t)q * sw] = part;
                        else dst[(ptrdiff_t)q * sw] += part;
                    }
                }
            }
        }
    }
}
"""

_DECL = """
void NAME_max_pool(const void *, void *, ptrdiff_t, int, int, int, int, int, int, int, int,
                   int, int, int, int, int);
void NAME_max_pool_index(const void *, const void *, signed char *, ptrdiff_t, int, int, int,
                         int, int, int, int, int, int, int, int, int, int);
void NAME_window_scatter(const void *, const signed char *, void *, ptrdiff_t, int, int, int,
                         int, int, int, int, int, int, int, int, int, int, int);
"""



def source() -> tuple[str, str]:
    """(declarations, C source) of the pooling loops for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_max_pool(" in src and "f64_window_scatter(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C.replace("CHUNK", str(CHUNK)))
    return decl, "#include <math.h>\n#include <string.h>\n" + src


def _covered(xp, arrays, kernel, padding) -> bool:
    """Whether the loops cover a call: 4-d NumPy arrays in one of float32/float64 (the
    first), 2 spatial dims, no negative padding, fast paths on."""
    dt = getattr(arrays[0], "dtype", None)
    return (LOOPS and fast_paths_enabled() and xp is np and dt in C_PREFIX and len(kernel) == 2
            and all(type(a) is np.ndarray and a.ndim == 4 for a in arrays)
            and all(lo >= 0 and hi >= 0 for lo, hi in padding))


def wrappers(lib, ffi) -> dict:
    """``{name: impl}`` for :data:`PRIMS`: each with its impl's signature, running its C loop
    when it covers the call, else the impl (``lib``, ``ffi``: the cffi module compiled from
    :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> pool = wrappers(mod.lib, mod.ffi)["max_pool"]  # doctest: +SKIP
        >>> pool(np, np.arange(16.0).reshape(1, 1, 4, 4), kernel=(2, 2), stride=(2, 2),
        ...      padding=((0, 0), (0, 0)), dilation=(1, 1))[0, 0]  # doctest: +SKIP
        array([[ 5.,  7.],
               [13., 15.]])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impl as registered

    impls = {k: REGISTRY[k].impl for k in PRIMS}
    fb = ffi.from_buffer

    def geometry(kernel, stride, padding, dilation, out):
        """The C loops' geometry arguments, and whether the planes go parallel."""
        nc = out[0] * out[1]
        par = nc > 1 and nc * out[2] * out[3] * kernel[0] * kernel[1] >= PARALLEL
        return (nc, *kernel, *stride, padding[0][0], padding[1][0], *dilation, out[2],
                out[3]), int(par)

    def max_pool(xp, x, kernel, stride, padding, dilation):
        if _covered(xp, (x,), kernel, padding):
            n, c, h, w = x.shape
            oh, ow = out_size((h, w), kernel, stride, padding, dilation)
            if n * c and oh >= 1 and ow >= 1 and min(stride) >= 1:
                x = np.ascontiguousarray(x)
                y = np.empty((n, c, oh, ow), x.dtype)
                (nc, *geo), par = geometry(kernel, stride, padding, dilation, y.shape)
                getattr(lib, f"{C_PREFIX[x.dtype]}_max_pool")(
                    fb(x), fb(y, require_writable=True), nc, h, w, *geo, par)
                TAKEN["max_pool"] += 1
                return y
        return impls["max_pool"](xp, x, kernel=kernel, stride=stride, padding=padding,
                                 dilation=dilation)

    def max_pool_index(xp, x, out, kernel, stride, padding, dilation):
        if _covered(xp, (x, out), kernel, padding) and kernel[0] * kernel[1] <= 127:
            n, c, h, w = x.shape
            shape = (n, c) + out_size((h, w), kernel, stride, padding, dilation)
            if (n * c and out.shape == shape and out.dtype == x.dtype and min(shape) >= 1
                    and min(stride) >= 1):
                x, out = np.ascontiguousarray(x), np.ascontiguousarray(out)
                idx = np.empty(shape, np.int8)
                (nc, *geo), par = geometry(kernel, stride, padding, dilation, shape)
                getattr(lib, f"{C_PREFIX[x.dtype]}_max_pool_index")(
                    fb(x), fb(out), ffi.cast("signed char *", fb(idx, require_writable=True)),
                    nc, h, w, *geo, par)
                TAKEN["max_pool_index"] += 1
                return idx
        return impls["max_pool_index"](xp, x, out, kernel=kernel, stride=stride,
                                       padding=padding, dilation=dilation)

    def window_scatter(xp, g, idx, kernel, stride, padding, dilation, size):
        if (_covered(xp, (g, idx), kernel, padding) and idx.dtype == np.int8
                and len(size) == 2 and kernel[0] * kernel[1] <= 127):
            n, c, oh, ow = g.shape
            if (n * c and idx.shape == g.shape and min(g.shape) >= 1 and min(stride) >= 1
                    and (oh, ow) == out_size(size, kernel, stride, padding, dilation)):
                g, idx = np.ascontiguousarray(g), np.ascontiguousarray(idx)
                z = np.empty((n, c) + tuple(size), g.dtype)
                (nc, *geo), par = geometry(kernel, stride, padding, dilation, g.shape)
                getattr(lib, f"{C_PREFIX[g.dtype]}_window_scatter")(
                    fb(g), ffi.cast("signed char *", fb(idx)), fb(z, require_writable=True),
                    nc, *size, *geo, int(_disjoint(kernel, stride, dilation)), par)
                TAKEN["window_scatter"] += 1
                return z
        return impls["window_scatter"](xp, g, idx, kernel=kernel, stride=stride,
                                       padding=padding, dilation=dilation, size=size)

    return {"max_pool": max_pool, "max_pool_index": max_pool_index,
            "window_scatter": window_scatter}
