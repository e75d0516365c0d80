"""Backend "c": the row-wise reductions at the edges of the elementwise work as C loops:
``softmax`` and ``log_softmax`` over the last axis, ``layer_norm`` over trailing axes and its
raw backward (``kernel.layer_norm_vjp_rows``), ``sum_to`` over leading axes (bias gradients,
column sums), and the attention's softmax over the keys and its backward (the step that
``self_attention`` and ``kernel.self_attention_vjp`` take as a parameter).

The NumPy versions make several passes over each row block, each a separate call on one
thread (softmax: max, subtract, exp, sum, divide; layer norm: a BLAS product for the mean, a
subtraction, an ``einsum`` for the variance, a scaling). Each C loop makes one or two passes
per row, parallel over rows (over column blocks for column sums) with OpenMP when the work
pays for waking the threads (``render_c.PARALLEL_WORK``); the attention's loops run inside
the impl's own split of the batch over the pool.

Numerics: the elementwise steps are the impls' operations in their order and dtype, but the
sums are accumulated in the array's dtype in another order (vector partial sums along a row,
in order down a column) than NumPy's pairwise sums or BLAS's products, and ``exp``/``log``
are the C library's; so results agree with the NumPy backend to float rounding, not bitwise
(tested at relative 1e-5 float32, 1e-12 float64). A column sum of two or more columns adds
the rows in order, as NumPy's ``x.sum(axis=0)`` does on a C-contiguous array: bitwise that
(the impl's fast path, BLAS's ``ones @ x``, rounds otherwise; one column, a contiguous run
that NumPy sums pairwise, is left to the impl). A NaN in a row makes the row NaN (the max
propagates it as NumPy's ``max`` does); a row of ``-inf`` gives NaN as in NumPy.

A call the loops do not cover (not float32/float64, another array module, an axis that is
not the last, a ``sum_to`` that keeps a middle axis, a per-sample attention bias) runs the
impl or NumPy's step.

The raw layer-norm backward with its affine step's backward (``g * w``), the parameters'
column sums, the gradient it is added to and the column sum of that is one C call
(:func:`fuse_layer_norm`, a pass over the IR before the fusion groups): the unfused C
program's operations in its order, so bitwise its results.

The attention itself (``self_attention`` and ``kernel.self_attention_vjp``, without a
dropout mask or a cotangent for the weights) runs as one C loop over the (sample, head)
blocks, parallel over them with OpenMP: each block's products (``cblas_?gemm`` of NumPy's
bundled OpenBLAS, :func:`~chainrule.jit.cconv.gemm_pointers`, with the operands' strides and
transpose flags, no copies but the scaled ``q^T`` the impl also makes) and its softmax step
one after the other while the block is in cache, where the impl makes each step one
batched call over the whole batch (the batch's q, k, v, scores and weights, 4 MB in the
transformer benchmark, pass through the caches once per step). The products and the softmax
are the impl's, so the results agree with it to rounding (another order of the BLAS calls
only). The loop skips the tiles that cannot change a result (``SKIP_TILES``): in the forward
those where the bias is -inf in every entry (a causal mask's upper triangle: the scores are
not computed, the weights there are 0, and their terms of ``pt^T @ v`` are left out), in the
backward those where the block's weights are exactly 0 (in each of its four products); only
in a block whose operands are finite and whose dot products cannot overflow, so that each
term left out is exactly 0 and no NaN is lost (an inf in ``v`` makes ``0 * inf`` NaN in the
impl: that block runs every tile). ``TAKEN`` counts these calls and the blocks that skipped.
"""

from __future__ import annotations

import collections
import math

from ..backend import np
from ..primitives import attention
from ..primitives.reduce import _ln_apply, _ln_vjp_rows
from .cconv import _BLAS_THREADED, gemm_pointers, one_blas_thread
from .fuse import _ufunc_of
from .ir import Op, Var
from .render_c import C_PREFIX, PARALLEL_WORK, per_float_type

PRIMS = ("softmax", "log_softmax", "layer_norm", "sum_to", "self_attention")
FUNCS = ("kernel.layer_norm_vjp_rows", "kernel.self_attention_vjp",
         "kernel.layer_norm_affine_vjp")

# Each row: a max (with a NaN flag: OpenMP's max reduction drops NaN), then one pass of
# exp and sum, then the scaling. ``par`` says whether to split the rows among threads.
# glibc's vector exp takes a slow scalar path for a vector holding an argument whose result
# under- or overflows (-inf, a masked score, or below about -87 in float32): an argument below
# LOW_ARG (exp of it under 1e-34 in float32, 1e-304 in float64) gives 0 without calling exp,
# which is called on m - m instead: 0, or NaN where the max is not finite (the row is NaN
# then, as NumPy's steps give), and a value gcc cannot fold (with a constant it rewrote
# exp(c ? z : 0) as c ? exp(z) : 1 and called exp on every z). With it a causally masked
# attention block takes half NumPy's time; without, 40% more.
_C = """
#include <omp.h>
#include <stdlib.h>
#define LOW_ARG (sizeof(T) == 4 ? (T)-80 : (T)-700)
/* the attention's tiles (forward, backward; ab_jit_attention.py) */
#define ATT_TILE_F 32
#define ATT_TILE_B 32
#define ATT_MAX_TILES 64

static inline T NAME_rowmax(const T *restrict x, ptrdiff_t n)
{
    T m = x[0];
    int nan = 0;
    #pragma omp simd reduction(max:m) reduction(|:nan)
    for (ptrdiff_t j = 0; j < n; j++) {
        m = x[j] > m ? x[j] : m;
        nan |= x[j] != x[j];
    }
    return nan ? (T)NAN : m;
}

void NAME_softmax(const void *x_, void *y_, ptrdiff_t rows, ptrdiff_t n, int take_log, int par)
{
    const T *restrict x = (const T *)x_;
    T *restrict y = (T *)y_;
    #pragma omp parallel for schedule(static) if (par)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const T *restrict xr = x + r * n;
        T *restrict yr = y + r * n;
        const T m = NAME_rowmax(xr, n);
        const T lo = LOW_ARG, mm = m - m;
        T s = 0;
        if (take_log) {
            #pragma omp simd reduction(+:s)
            for (ptrdiff_t j = 0; j < n; j++) {
                const T z = xr[j] - m;
                yr[j] = z;
                const T e = EXP(z >= lo ? z : mm);
                s += z < lo ? (T)0 : e;
            }
            const T ls = LOG(s);
            #pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++)
                yr[j] = yr[j] - ls;
        } else {
            #pragma omp simd reduction(+:s)
            for (ptrdiff_t j = 0; j < n; j++) {
                const T z = xr[j] - m;
                const T e = EXP(z >= lo ? z : mm);
                yr[j] = z < lo ? (T)0 : e;
                s += yr[j];
            }
            #pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++)
                yr[j] = yr[j] / s;
        }
    }
}

/* (x - mean) / sqrt(var + eps) per row, the impl's steps: mean, d = x - mean, var = sum(d d)
   / n, rstd = 1 / sqrt(var + eps), y = d * rstd */
void NAME_ln(const void *x_, void *y_, ptrdiff_t rows, ptrdiff_t n, double eps, int par)
{
    const T *restrict x = (const T *)x_;
    T *restrict y = (T *)y_;
    const T inv_n = (T)(1.0 / (double)n);
    #pragma omp parallel for schedule(static) if (par)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const T *restrict xr = x + r * n;
        T *restrict yr = y + r * n;
        T s = 0, q = 0;
        #pragma omp simd reduction(+:s)
        for (ptrdiff_t j = 0; j < n; j++)
            s += xr[j] * inv_n;
        #pragma omp simd reduction(+:q)
        for (ptrdiff_t j = 0; j < n; j++) {
            const T d = xr[j] - s;
            q += d * d;
        }
        const T rstd = (T)1 / SQRT(q * inv_n + (T)eps);
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            yr[j] = (xr[j] - s) * rstd;
    }
}

/* the raw backward: rstd from x as above, vm = sum(v) / n, vy = sum(v y) / n,
   out = ((v - y vy) - vm) rstd */
void NAME_ln_vjp(const void *v_, const void *x_, const void *y_, void *o_, ptrdiff_t rows,
                 ptrdiff_t n, double eps, int par)
{
    const T *restrict v = (const T *)v_;
    const T *restrict x = (const T *)x_;
    const T *restrict y = (const T *)y_;
    T *restrict o = (T *)o_;
    const T inv_n = (T)(1.0 / (double)n);
    #pragma omp parallel for schedule(static) if (par)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const T *restrict xr = x + r * n, *restrict vr = v + r * n, *restrict yr = y + r * n;
        T *restrict or_ = o + r * n;
        T s = 0, q = 0, vm = 0, vy = 0;
        #pragma omp simd reduction(+:s, vm)
        for (ptrdiff_t j = 0; j < n; j++) {
            s += xr[j] * inv_n;
            vm += vr[j] * inv_n;
        }
        #pragma omp simd reduction(+:q, vy)
        for (ptrdiff_t j = 0; j < n; j++) {
            const T d = xr[j] - s;
            q += d * d;
            vy += vr[j] * yr[j];
        }
        const T rstd = (T)1 / SQRT(q * inv_n + (T)eps);
        vy = vy * inv_n;
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            or_[j] = ((vr[j] - yr[j] * vy) - vm) * rstd;
    }
}

/* dw[c0:c1] = column sums of g * h, db[c0:c1] = of g, dxs[c0:c1] = of dx (each NULL: not
   wanted), the rows added in order as NAME_colsum does */
static void NAME_affine_sums(const T *restrict g, const T *restrict h, const T *restrict dx,
                             T *restrict dw, T *restrict db, T *restrict dxs, ptrdiff_t rows,
                             ptrdiff_t n, ptrdiff_t c0, ptrdiff_t c1)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const T *restrict gr = g + r * n, *restrict hr = h + r * n, *restrict xr = dx + r * n;
        if (dxs) {
            #pragma omp simd
            for (ptrdiff_t c = c0; c < c1; c++)
                dxs[c] = r ? dxs[c] + xr[c] : xr[c];
        }
        if (dw) {
            #pragma omp simd
            for (ptrdiff_t c = c0; c < c1; c++)
                dw[c] = r ? dw[c] + gr[c] * hr[c] : gr[c] * hr[c];
        }
        if (db) {
            #pragma omp simd
            for (ptrdiff_t c = c0; c < c1; c++)
                db[c] = r ? db[c] + gr[c] : gr[c];
        }
    }
}

/* the backward of y = layer_norm(x) * w + b with y's cotangent g: v = g * w, dx = the raw
   backward of NAME_ln_vjp on (v, x, h) (the same loops), plus acc where acc is given (the
   gradient it is added to); dw = column sums of g * h, db = column sums of g (NULL: not
   wanted), dxs = column sums of dx (NULL: not wanted: the bias gradient of the product dx
   also flows into), the rows added in order. With ``par`` the rows go to OpenMP's threads
   and the column sums, after them, to column blocks (the same order of additions) */
void NAME_ln_affine_vjp(const void *g_, const void *w_, const void *x_, const void *h_,
                        const void *acc_, void *dx_, void *dw_, void *db_, void *dxs_,
                        ptrdiff_t rows, ptrdiff_t n, double eps, int par)
{
    const T *restrict g = (const T *)g_;
    const T *restrict w = (const T *)w_;
    const T *restrict x = (const T *)x_;
    const T *restrict h = (const T *)h_;
    const T *restrict acc = (const T *)acc_;
    T *restrict dx = (T *)dx_;
    T *restrict dw = (T *)dw_;
    T *restrict db = (T *)db_;
    T *restrict dxs = (T *)dxs_;
    const T inv_n = (T)(1.0 / (double)n);
    #pragma omp parallel for schedule(static) if (par)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const T *restrict xr = x + r * n, *restrict gr = g + r * n, *restrict hr = h + r * n;
        T *restrict or_ = dx + r * n;
        T s = 0, q = 0, vm = 0, vy = 0;
        #pragma omp simd reduction(+:s, vm)
        for (ptrdiff_t j = 0; j < n; j++) {
            s += xr[j] * inv_n;
            vm += (gr[j] * w[j]) * inv_n;
        }
        #pragma omp simd reduction(+:q, vy)
        for (ptrdiff_t j = 0; j < n; j++) {
            const T d = xr[j] - s;
            q += d * d;
            vy += (gr[j] * w[j]) * hr[j];
        }
        const T rstd = (T)1 / SQRT(q * inv_n + (T)eps);
        vy = vy * inv_n;
        if (acc) {
            const T *restrict ar = acc + r * n;
            #pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++)
                or_[j] = ar[j] + (((gr[j] * w[j]) - hr[j] * vy) - vm) * rstd;
        } else {
            #pragma omp simd
            for (ptrdiff_t j = 0; j < n; j++)
                or_[j] = (((gr[j] * w[j]) - hr[j] * vy) - vm) * rstd;
        }
        if (!par && dw) {
            #pragma omp simd
            for (ptrdiff_t c = 0; c < n; c++)
                dw[c] = r ? dw[c] + gr[c] * hr[c] : gr[c] * hr[c];
        }
        if (!par && db) {
            #pragma omp simd
            for (ptrdiff_t c = 0; c < n; c++)
                db[c] = r ? db[c] + gr[c] : gr[c];
        }
        if (!par && dxs) {
            #pragma omp simd
            for (ptrdiff_t c = 0; c < n; c++)
                dxs[c] = r ? dxs[c] + or_[c] : or_[c];
        }
    }
    if (par && (dw || db || dxs)) {
        const int nthr = omp_get_max_threads();
        const ptrdiff_t blk = ((n + nthr - 1) / nthr + 15) / 16 * 16;
        const ptrdiff_t nb = (n + blk - 1) / blk;
        #pragma omp parallel for schedule(static) num_threads(nthr) if (nb > 1)
        for (ptrdiff_t k = 0; k < nb; k++)
            NAME_affine_sums(g, h, dx, dw, db, dxs, rows, n, k * blk,
                             k * blk + blk < n ? k * blk + blk : n);
    }
}

/* the attention's softmax over the keys, in place: pt holds ``mats`` (S, L) blocks (keys,
   queries); per block, pt += b (b: one (S, L) block or NULL), each column's max (NaN
   propagates), pt = exp(pt - max), pt *= 1 / the column's sum: the impl's steps, the sums
   over the keys added in order (the impl's are a BLAS product); exp as in the rows above.
   A column whose max is not finite (a NaN, +inf, or every key masked) is NaN, as NumPy's
   steps give */
void NAME_softmax_keys(void *pt_, const void *b_, ptrdiff_t mats, ptrdiff_t S, ptrdiff_t L)
{
    T *restrict pt = (T *)pt_;
    const T *restrict b = (const T *)b_;
    const T lo = LOW_ARG;
    T mx[L], sm[L];
    for (ptrdiff_t k = 0; k < mats; k++) {
        T *restrict p = pt + k * S * L;
        /* the bias added in the same pass as the max */
        if (b) {
            #pragma omp simd
            for (ptrdiff_t l = 0; l < L; l++)
                p[l] += b[l];
        }
        #pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++) {
            mx[l] = p[l];
            sm[l] = 0;
        }
        for (ptrdiff_t s = 1; s < S; s++) {
            T *restrict ps = p + s * L;
            if (b) {
                const T *restrict bs = b + s * L;
                #pragma omp simd
                for (ptrdiff_t l = 0; l < L; l++) {
                    const T v = ps[l] + bs[l];
                    ps[l] = v;
                    mx[l] = (v > mx[l] || v != v) ? v : mx[l];
                }
            } else {
                #pragma omp simd
                for (ptrdiff_t l = 0; l < L; l++) {
                    const T v = ps[l];
                    mx[l] = (v > mx[l] || v != v) ? v : mx[l];
                }
            }
        }
        for (ptrdiff_t s = 0; s < S; s++) {
            #pragma omp simd
            for (ptrdiff_t l = 0; l < L; l++) {
                const T z = p[s * L + l] - mx[l];
                const T e = EXP(z >= lo ? z : mx[l] - mx[l]);
                p[s * L + l] = z < lo ? (T)0 : e;
                sm[l] += p[s * L + l];
            }
        }
        #pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++)
            sm[l] = mx[l] - mx[l] == 0 ? (T)1 / sm[l] : (T)NAN;
        for (ptrdiff_t s = 0; s < S; s++) {
            #pragma omp simd
            for (ptrdiff_t l = 0; l < L; l++)
                p[s * L + l] *= sm[l];
        }
    }
}

/* its backward, in place: d = ((d - sum over the keys of d * p) * p) * scale per block */
void NAME_softmax_keys_vjp(void *d_, const void *p_, ptrdiff_t mats, ptrdiff_t S, ptrdiff_t L,
                           double scale)
{
    T *restrict d = (T *)d_;
    const T *restrict pt = (const T *)p_;
    const T sc = (T)scale;
    T cs[L];
    for (ptrdiff_t k = 0; k < mats; k++) {
        T *restrict dk = d + k * S * L;
        const T *restrict p = pt + k * S * L;
        #pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++)
            cs[l] = 0;
        for (ptrdiff_t s = 0; s < S; s++) {
            #pragma omp simd
            for (ptrdiff_t l = 0; l < L; l++)
                cs[l] += dk[s * L + l] * p[s * L + l];
        }
        for (ptrdiff_t s = 0; s < S; s++) {
            #pragma omp simd
            for (ptrdiff_t l = 0; l < L; l++)
                dk[s * L + l] = ((dk[s * L + l] - cs[l]) * p[s * L + l]) * sc;
        }
    }
}

/* out[c] = sum over rows of x[r, c], the rows added in order (NumPy's order for axis 0 of
   a C-contiguous array), each row's run of columns at once; with ``par`` each of OpenMP's
   threads takes one contiguous block of columns */
void NAME_colsum(const void *x_, void *o_, ptrdiff_t rows, ptrdiff_t cols, int par)
{
    const int nthr = par ? omp_get_max_threads() : 1;
    const T *restrict x = (const T *)x_;
    T *restrict o = (T *)o_;
    const ptrdiff_t blk = ((cols + nthr - 1) / nthr + 15) / 16 * 16;
    const ptrdiff_t nb = (cols + blk - 1) / blk;
    #pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1)
    for (ptrdiff_t b = 0; b < nb; b++) {
        const ptrdiff_t c0 = b * blk, c1 = c0 + blk < cols ? c0 + blk : cols;
        T *restrict ob = o + c0;
        const ptrdiff_t w = c1 - c0;
        #pragma omp simd
        for (ptrdiff_t c = 0; c < w; c++)
            ob[c] = x[c0 + c];
        for (ptrdiff_t r = 1; r < rows; r++) {
            const T *restrict xr = x + r * cols + c0;
            #pragma omp simd
            for (ptrdiff_t c = 0; c < w; c++)
                ob[c] += xr[c];
        }
    }
}

typedef void (*NAME_att_gemm_t)(int, int, int, long long, long long, long long, T, const T *,
                                long long, const T *, long long, T, T *, long long);

/* the largest |x| over ``rows`` rows of ``D`` values ``rs`` apart, as a double; NaN when x
   holds a NaN */
static double NAME_maxabs(const T *x, ptrdiff_t rows, ptrdiff_t D, ptrdiff_t rs)
{
    T m = 0;
    int nan = 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const T *restrict xr = x + r * rs;
        #pragma omp simd reduction(max:m) reduction(|:nan)
        for (ptrdiff_t d = 0; d < D; d++) {
            const T a = xr[d] < 0 ? -xr[d] : xr[d];
            m = a > m ? a : m;
            nan |= xr[d] != xr[d];
        }
    }
    return nan ? NAN : (double)m;
}

/* whether every dot product of D terms of values at most ma and mb in size is finite (and
   so is each term): false for a NaN or inf bound */
static int NAME_bounded(double ma, double mb, ptrdiff_t D)
{
    const double top = sizeof(T) == 4 ? 1.7e38 : 1.7e308;
    return ma <= top && mb <= top && ma * mb <= top / (double)(D > 0 ? D : 1) * 0.5;
}

/* The live tiles of an (L, L) block z (keys, queries) in tiles of ts: a tile is dead
   when every entry of it is (-inf for a bias, dead = 0; exactly zero for weights, dead = 1).
   rlo/rhi: per key tile, the first live column and one past the last (whole tiles); clo/chi
   per query tile, the rows. 1 when a tile is dead, every key tile and every query tile has
   a live tile and (weights) z holds no NaN, else 0 (then nothing is skipped) */
static int NAME_live(const T *z, ptrdiff_t L, ptrdiff_t ts, int zeros, ptrdiff_t *rlo,
                     ptrdiff_t *rhi, ptrdiff_t *clo, ptrdiff_t *chi)
{
    const ptrdiff_t nt = (L + ts - 1) / ts;
    for (ptrdiff_t i = 0; i < nt; i++) {
        rlo[i] = clo[i] = L;
        rhi[i] = chi[i] = 0;
    }
    int nan = 0, dead = 0;
    for (ptrdiff_t i = 0; i < nt; i++) {
        const ptrdiff_t r0 = i * ts, r1 = r0 + ts < L ? r0 + ts : L;
        for (ptrdiff_t j = 0; j < nt; j++) {
            const ptrdiff_t c0 = j * ts, c1 = c0 + ts < L ? c0 + ts : L;
            int live = 0;
            for (ptrdiff_t s = r0; s < r1 && !live; s++) {
                const T *restrict zs = z + s * L;
                #pragma omp simd reduction(|:live)
                for (ptrdiff_t l = c0; l < c1; l++)
                    live |= zeros ? zs[l] != 0 : zs[l] != -INFINITY;
            }
            if (live) {
                rlo[i] = rlo[i] < c0 ? rlo[i] : c0;
                rhi[i] = rhi[i] > c1 ? rhi[i] : c1;
                clo[j] = clo[j] < r0 ? clo[j] : r0;
                chi[j] = chi[j] > r1 ? chi[j] : r1;
            } else {
                dead = 1;
            }
        }
    }
    if (!dead)
        return 0;
    if (zeros) {
        /* (after the tiles: a block with no dead tile, none masked, is not read whole) */
        for (ptrdiff_t i = 0; i < L * L; i += L) {
            #pragma omp simd reduction(|:nan)
            for (ptrdiff_t l = 0; l < L; l++)
                nan |= z[i + l] != z[i + l];
        }
        if (nan)
            return 0;
    }
    for (ptrdiff_t i = 0; i < nt; i++)
        if (rhi[i] <= rlo[i] || chi[i] <= clo[i])
            return 0;
    return 1;
}

/* rows [r0, r1) of an (., L) block: zero outside columns [c0, c1) */
static void NAME_zero_outside(T *p, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t L, ptrdiff_t c0,
                              ptrdiff_t c1)
{
    for (ptrdiff_t s = r0; s < r1; s++) {
        for (ptrdiff_t l = 0; l < c0; l++)
            p[s * L + l] = 0;
        for (ptrdiff_t l = c1; l < L; l++)
            p[s * L + l] = 0;
    }
}

/* NAME_softmax_keys on one (L, L) block whose rows in key tile i (of ts) hold 0 outside
   columns [rlo[i], rhi[i]), where the bias is -inf: those entries' weights are 0 (NaN in a
   column whose max is not finite, as there), so the max and the exp pass skip them; the
   sums add the same nonzero terms in the same order */
static void NAME_softmax_tiles(T *restrict p, const T *restrict b, ptrdiff_t L, ptrdiff_t ts,
                               const ptrdiff_t *rlo, const ptrdiff_t *rhi)
{
    const T lo = LOW_ARG;
    T mx[L], sm[L];
    #pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++) {
        mx[l] = -INFINITY;
        sm[l] = 0;
    }
    for (ptrdiff_t s = 0; s < L; s++) {
        T *restrict ps = p + s * L;
        const T *restrict bs = b + s * L;
        const ptrdiff_t c0 = rlo[s / ts], c1 = rhi[s / ts];
        #pragma omp simd
        for (ptrdiff_t l = c0; l < c1; l++) {
            const T v = ps[l] + bs[l];
            ps[l] = v;
            mx[l] = (v > mx[l] || v != v) ? v : mx[l];
        }
    }
    for (ptrdiff_t s = 0; s < L; s++) {
        T *restrict ps = p + s * L;
        const ptrdiff_t c0 = rlo[s / ts], c1 = rhi[s / ts];
        #pragma omp simd
        for (ptrdiff_t l = c0; l < c1; l++) {
            const T z = ps[l] - mx[l];
            const T e = EXP(z >= lo ? z : mx[l] - mx[l]);
            ps[l] = z < lo ? (T)0 : e;
            sm[l] += ps[l];
        }
    }
    #pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++)
        sm[l] = mx[l] - mx[l] == 0 ? (T)1 / sm[l] : (T)NAN;
    for (ptrdiff_t s = 0; s < L; s++) {
        #pragma omp simd
        for (ptrdiff_t l = 0; l < L; l++)
            p[s * L + l] *= sm[l];
    }
}

/* NAME_softmax_keys_vjp on one (L, L) block over the columns [rlo[i], rhi[i]) of the rows
   in key tile i only, where the weights p are 0 outside them (d there is left as it is: the
   products that read d skip those tiles); the same terms as there but the zero ones */
static void NAME_softmax_vjp_tiles(T *restrict d, const T *restrict p, ptrdiff_t L,
                                   ptrdiff_t ts, const ptrdiff_t *rlo, const ptrdiff_t *rhi,
                                   double scale)
{
    const T sc = (T)scale;
    T cs[L];
    #pragma omp simd
    for (ptrdiff_t l = 0; l < L; l++)
        cs[l] = 0;
    for (ptrdiff_t s = 0; s < L; s++) {
        const ptrdiff_t c0 = rlo[s / ts], c1 = rhi[s / ts];
        #pragma omp simd
        for (ptrdiff_t l = c0; l < c1; l++)
            cs[l] += d[s * L + l] * p[s * L + l];
    }
    for (ptrdiff_t s = 0; s < L; s++) {
        const ptrdiff_t c0 = rlo[s / ts], c1 = rhi[s / ts];
        #pragma omp simd
        for (ptrdiff_t l = c0; l < c1; l++)
            d[s * L + l] = ((d[s * L + l] - cs[l]) * p[s * L + l]) * sc;
    }
}

/* The attention, one (sample, head) block per task, each block's steps done together while
   its data is in cache. q, k, v rows lie rs apart in qkv (a sample bs apart, k HD after q, v
   2 HD after); o's (and go's) rows ors apart (a sample obs apart); pt holds the weights,
   (keys, queries) per block. Forward (go NULL): qt = q^T * scale, pt = k @ qt, the softmax
   over the keys (NAME_softmax_keys, with the (keys, queries) bias b or NULL), out's block =
   pt^T @ v. Backward (go given, out = dx in qkv's layout): dst = v @ go^T, dv = pt @ go,
   dst := the softmax's backward (NAME_softmax_keys_vjp), dq = dst^T @ k, dk = dst @ q.
   Tiles that cannot change a result are skipped (``skip``): in the forward the tiles of
   the scores where the bias is -inf (their weights are 0) and those weights' terms of
   pt^T @ v, in the backward the tiles where a block's weights are exactly 0, in each of its
   products; only where the operands are finite and their dot products cannot overflow, so
   a skipped term is exactly 0 (and the weights hold no NaN), else the whole block runs.
   The number of blocks that skipped tiles, or -1 when a work buffer could not be had */
int NAME_attention(void *gemm_, const void *qkv_, const void *b_, const void *go_, void *out_,
                   void *pt_, ptrdiff_t N, ptrdiff_t L, ptrdiff_t H, ptrdiff_t D, ptrdiff_t rs,
                   ptrdiff_t bs, ptrdiff_t ors, ptrdiff_t obs, double scale, int par, int skip)
{
    const NAME_att_gemm_t gemm = (NAME_att_gemm_t)gemm_;
    const T *qkv = (const T *)qkv_;
    const T *gos = (const T *)go_;
    const T *b = (const T *)b_;
    T *out = (T *)out_;
    T *pt = (T *)pt_;
    const ptrdiff_t HD = H * D;
    const T sc = (T)scale;
    const ptrdiff_t ts = gos ? ATT_TILE_B : ATT_TILE_F, nt = (L + ts - 1) / ts;
    if (nt > ATT_MAX_TILES)
        skip = 0;
    /* the forward's live tiles: the bias's, the same for every block */
    ptrdiff_t frlo[ATT_MAX_TILES], frhi[ATT_MAX_TILES], fclo[ATT_MAX_TILES],
              fchi[ATT_MAX_TILES];
    if (skip && !gos)
        skip = b ? NAME_live(b, L, ts, 0, frlo, frhi, fclo, fchi) : 0;
    int failed = 0, skipped = 0;
    #pragma omp parallel if (par) reduction(|:failed) reduction(+:skipped)
    {
        /* dst and go^T, or q^T */
        T *w = (T *)malloc(sizeof(T) * L * (gos ? L + D : D));
        if (!w) failed = 1;
        ptrdiff_t rlo[ATT_MAX_TILES], rhi[ATT_MAX_TILES], clo[ATT_MAX_TILES],
                  chi[ATT_MAX_TILES];
        #pragma omp for schedule(dynamic, 1)
        for (ptrdiff_t t = 0; t < N * H; t++) {
            if (!w) continue;
            const ptrdiff_t n = t / H, h = t % H;
            const T *q = qkv + n * bs + h * D, *k = q + HD, *v = q + 2 * HD;
            T *p = pt + t * L * L;
            if (!gos) {
                /* written in order (strided reads): 3x faster than strided writes */
                for (ptrdiff_t d = 0; d < D; d++)
                    for (ptrdiff_t l = 0; l < L; l++)
                        w[d * L + l] = q[l * rs + d] * sc;
                T *o = out + n * obs + h * D;
                if (skip && NAME_bounded(NAME_maxabs(w, D, L, L), NAME_maxabs(k, L, D, rs), D)
                        && NAME_bounded(NAME_maxabs(v, L, D, rs), 1, 1)) {
                    for (ptrdiff_t i = 0; i < nt; i++) {
                        const ptrdiff_t r0 = i * ts;
                        const ptrdiff_t r1 = r0 + ts < L ? r0 + ts : L;
                        gemm(101, 111, 111, r1 - r0, frhi[i] - frlo[i], D, (T)1, k + r0 * rs,
                             rs, w + frlo[i], L, (T)0, p + r0 * L + frlo[i], L);
                        NAME_zero_outside(p, r0, r1, L, frlo[i], frhi[i]);
                    }
                    NAME_softmax_tiles(p, b, L, ts, frlo, frhi);
                    for (ptrdiff_t j = 0; j < nt; j++) {
                        const ptrdiff_t c0 = j * ts;
                        const ptrdiff_t c1 = c0 + ts < L ? c0 + ts : L;
                        gemm(101, 112, 111, c1 - c0, D, fchi[j] - fclo[j], (T)1,
                             p + fclo[j] * L + c0, L, v + fclo[j] * rs, rs, (T)0,
                             o + c0 * ors, ors);
                    }
                    skipped++;
                    continue;
                }
                gemm(101, 111, 111, L, L, D, (T)1, k, rs, w, L, (T)0, p, L);
                NAME_softmax_keys(p, b, 1, L, L);
                gemm(101, 112, 111, L, D, L, (T)1, p, L, v, rs, (T)0, o, ors);
                continue;
            }
            T *dq = out + n * bs + h * D, *dk = dq + HD, *dv = dq + 2 * HD;
            const T *go = gos + n * obs + h * D;
            /* v @ go^T as v @ (a copy of go^T): OpenBLAS's NT product of these blocks took
               1.7x its NN one */
            T *gt = w + L * L;
            for (ptrdiff_t d = 0; d < D; d++)
                for (ptrdiff_t l = 0; l < L; l++)
                    gt[d * L + l] = go[l * ors + d];
            if (skip && NAME_live(p, L, ts, 1, rlo, rhi, clo, chi)
                    && NAME_bounded(NAME_maxabs(v, L, D, rs), NAME_maxabs(gt, D, L, L), D)
                    && NAME_bounded(NAME_maxabs(q, L, D, rs), 1, 1)
                    && NAME_bounded(NAME_maxabs(k, L, D, rs), 1, 1)) {
                for (ptrdiff_t i = 0; i < nt; i++) {
                    const ptrdiff_t r0 = i * ts;
                    const ptrdiff_t r1 = r0 + ts < L ? r0 + ts : L;
                    gemm(101, 111, 111, r1 - r0, rhi[i] - rlo[i], D, (T)1, v + r0 * rs, rs,
                         gt + rlo[i], L, (T)0, w + r0 * L + rlo[i], L);
                    gemm(101, 111, 111, r1 - r0, D, rhi[i] - rlo[i], (T)1, p + r0 * L + rlo[i],
                         L, go + rlo[i] * ors, ors, (T)0, dv + r0 * rs, rs);
                }
                NAME_softmax_vjp_tiles(w, p, L, ts, rlo, rhi, scale);
                for (ptrdiff_t j = 0; j < nt; j++) {
                    const ptrdiff_t c0 = j * ts;
                    const ptrdiff_t c1 = c0 + ts < L ? c0 + ts : L;
                    gemm(101, 112, 111, c1 - c0, D, chi[j] - clo[j], (T)1, w + clo[j] * L + c0,
                         L, k + clo[j] * rs, rs, (T)0, dq + c0 * rs, rs);
                }
                for (ptrdiff_t i = 0; i < nt; i++) {
                    const ptrdiff_t r0 = i * ts;
                    const ptrdiff_t r1 = r0 + ts < L ? r0 + ts : L;
                    gemm(101, 111, 111, r1 - r0, D, rhi[i] - rlo[i], (T)1, w + r0 * L + rlo[i],
                         L, q + rlo[i] * rs, rs, (T)0, dk + r0 * rs, rs);
                }
                skipped++;
                continue;
            }
            gemm(101, 111, 111, L, L, D, (T)1, v, rs, gt, L, (T)0, w, L);
            gemm(101, 111, 111, L, D, L, (T)1, p, L, go, ors, (T)0, dv, rs);
            NAME_softmax_keys_vjp(w, p, 1, L, L, scale);
            gemm(101, 112, 111, L, D, L, (T)1, w, L, k, rs, (T)0, dq, rs);
            gemm(101, 111, 111, L, D, L, (T)1, w, L, q, rs, (T)0, dk, rs);
        }
        free(w);
    }
    return failed ? -1 : skipped;
}

"""

_DECL = """
void NAME_softmax(const void *, void *, ptrdiff_t, ptrdiff_t, int, int);
void NAME_ln(const void *, void *, ptrdiff_t, ptrdiff_t, double, int);
void NAME_ln_vjp(const void *, const void *, const void *, void *, ptrdiff_t, ptrdiff_t, double,
                 int);
void NAME_colsum(const void *, void *, ptrdiff_t, ptrdiff_t, int);
void NAME_ln_affine_vjp(const void *, const void *, const void *, const void *, const void *,
                        void *, void *, void *, void *, ptrdiff_t, ptrdiff_t, double, int);
void NAME_softmax_keys(void *, const void *, ptrdiff_t, ptrdiff_t, ptrdiff_t);
void NAME_softmax_keys_vjp(void *, const void *, ptrdiff_t, ptrdiff_t, ptrdiff_t, double);
int NAME_attention(void *, const void *, const void *, const void *, void *, void *, ptrdiff_t,
                   ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                   double, int, int);
"""

# the attention loops keep two rows of ``queries`` values on the C stack (of a pool thread)
_MAX_QUERIES = 8192
# multiply-adds of a whole attention (forward) from which its blocks go to OpenMP's threads
_ATT_PARALLEL_MACS = 1 << 20
# 1: the attention loop skips the tiles that cannot change a result (-inf bias, zero
# weights); read at each call (``ab_jit_attention.py`` sets it to 0 for its A)
SKIP_TILES = 1
# calls that ran the attention's one-loop C paths, and blocks that skipped tiles in them
# (``attention_tiles``, ``attention_vjp_tiles``; tests read it)
TAKEN: collections.Counter = collections.Counter()

# the parallel threshold: element-operations (``render_c.PARALLEL_WORK``, about the time of
# waking a thread) per element of each loop, from its time per element on one core (float32,
# the transformer's shapes: softmax 1.5 ns, layer norm 0.4 ns, its backward 0.7 ns, a column
# sum 0.1 ns), halved, so a loop goes parallel only where it takes twice the wake-up
_WORK = {"softmax": 5, "ln": 1.4, "ln_vjp": 2.4, "colsum": 0.35}


def source() -> tuple[str, str]:
    """(declarations, C source) of the row loops for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_softmax(" in src and "void f64_colsum(" in decl
        True
    """
    return per_float_type(_DECL, _C, "SQRT", "EXP", "LOG")


def _plain(x) -> bool:
    return type(x) is np.ndarray and x.dtype in C_PREFIX and x.size > 0


def _trailing(axes, ndim) -> bool:
    """Whether ``axes`` are the last ``len(axes)`` axes of an ``ndim``-d array, in order."""
    return tuple(a % ndim for a in axes) == tuple(range(ndim - len(axes), ndim))


def _rows(x, k):
    """(rows, n) of ``x`` seen as rows over its last ``k`` axes."""
    n = math.prod(x.shape[x.ndim - k:])
    return x.size // n, n


def _floats(v, shape=None) -> bool:
    """Whether ``v`` is an array Var of float32/float64 (of ``shape`` when given)."""
    return (isinstance(v, Var) and v.scalar is None and v.shape is not None
            and str(v.dtype) in ("float32", "float64") and (shape is None or v.shape == shape))


def _product(op, a):
    """The other operand when ``op`` is a plain ``multiply`` with ``a`` one operand."""
    found = _ufunc_of(op)
    if found is None or found[0] != "multiply" or len(op.outs) != 1:
        return None
    x, y = found[1]
    return y if x is a else x if y is a else None


def _sum(op, shape):
    """The summed array when ``op`` is ``sum_to`` of an array to ``shape`` (its trailing
    dims), else None."""
    if op.kind == "prim" and op.name == "sum_to" and not op.writes and len(op.args) == 2 \
            and tuple(op.kwargs.get("shape", ())) == shape and len(op.kwargs) == 1:
        return op.args[1]
    return None


class _NP_SUMS:  # noqa: N801 - the ``F`` that ``reduce._ln_apply`` reads, on NumPy arrays
    @staticmethod
    def sum(a, axes, keepdims):
        return np.sum(a, axis=axes, keepdims=keepdims)


def _ln_affine_vjp_np(g, w, x, h, acc, axes, eps, sums):
    """``kernel.layer_norm_affine_vjp`` as the unfused program computes it: the raw
    backward of ``g * w``, ``acc +`` it, the column sums of ``g * h``, of ``g`` and of that
    ``dx``."""
    from ..primitives import REGISTRY  # noqa: PLC0415

    v = np.multiply(g, w)
    dx = _ln_vjp_rows(v, x, h, axes, eps)
    if dx is None:  # not rows of one dtype (float16...): the formula with NumPy's sums
        dx = _ln_apply(_NP_SUMS, v, x, h, axes, eps)
    outs = [dx if acc is None else np.add(acc, dx)]
    shape = x.shape[x.ndim - len(axes):]
    for k in sums:
        outs.append(REGISTRY["sum_to"].impl(np, {"w": np.multiply(g, h), "b": g}.get(k, outs[0]),
                                            shape=shape))
    return outs[0] if len(outs) == 1 else tuple(outs)


def uses_of(g):
    """``(uses, producer)`` of graph ``g``: how many ops read each Var (an output, effect or
    guard counts 2 more, so it is never taken for an intermediate), and the index of the op
    defining each Var.

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: (x * 2.0).sum(), backend="numpy")
        >>> _ = f(cr.ones(3)), f(cr.ones(3))
        >>> uses, producer = uses_of(f.graph_ir())
        >>> sorted(uses.values())
        [1, 1, 2]
    """
    uses: dict = collections.Counter()
    for op in g.ops:
        for v in set(op.inputs()):
            uses[v] += 1
    for v in [*g.outputs, *(e.value for e in g.effects), *(gd.var for gd in g.guards)]:
        if isinstance(v, Var):
            uses[v] += 2  # never an intermediate
    return uses, {o: i for i, op in enumerate(g.ops) for o in op.outs}


def fuse_layer_norm(g):
    """``g`` with each layer norm's backward fused with its affine step's for backend "c":
    the raw backward ``dx = kernel.layer_norm_vjp_rows(g * w, x, h, axes, eps)``, with the
    parameters' gradients ``sum_to(g * h)`` and ``sum_to(g)`` and a gradient ``acc + dx``
    it is added to where the graph has them, becomes
    ``kernel.layer_norm_affine_vjp(g, w, x, h, acc, axes, eps, sums)`` at the place of the
    last of them; an op between that reads one of their results moves after it, and a
    later ``sum_to(dx)`` (the bias gradient of a product that ``dx`` flows into) is made in
    the same pass. An intermediate read by any other op (or an output) keeps the ops apart.
    (The forward, the layer norm and its affine kernel, stays two loops: one fused loop
    writing both ``h`` and ``y`` measured slower, docs/jit.md.)

    Example:
        >>> import chainrule as cr
        >>> ln = cr.nn.LayerNorm(8)
        >>> def grads(x):
        ...     x = x.detach().requires_grad_()
        ...     return cr.autograd.grad((ln(x) ** 2).sum(), [x, ln.weight, ln.bias])
        >>> f = cr.jit(grads, backend="numpy")
        >>> _ = f(cr.ones((4, 8))), f(cr.ones((4, 8)))
        >>> [op.name for op in fuse_layer_norm(f.graph_ir()).ops if "layer_norm" in op.name]
        ['layer_norm', 'kernel.layer_norm_affine_vjp']
    """
    ops = g.ops
    uses, producer = uses_of(g)
    readers: dict = {}
    for i, op in enumerate(ops):
        for v in op.inputs():
            readers.setdefault(v, []).append(i)
    put: dict = {}  # op index -> the ops to put there (None: dropped)
    for i, op in enumerate(ops):
        if i in put:
            continue
        if op.kind != "func" or op.name != "kernel.layer_norm_vjp_rows":
            continue
        found = _affine_backward(ops, i, uses, producer, readers, put)
        if found is not None:
            members, fused, after = found
            for j in members + after:
                put[j] = None
            put[max(members)] = fused
    if not put:
        return g
    new = []
    for i, op in enumerate(ops):
        if i not in put:
            new.append(op)
        elif put[i] is not None:
            new.extend(put[i])
    return g.replace(ops=new)


def _affine_backward(ops, i, uses, producer, readers, put):
    op = ops[i]
    if op.writes or len(op.args) != 5 or op.kwargs or len(op.outs) != 1:
        return None
    v, x, h, axes, eps = op.args
    if not (_floats(x) and _floats(v, x.shape) and _floats(h, x.shape)
            and type(eps) in (int, float) and isinstance(axes, tuple) and axes
            and all(type(a) is int for a in axes) and _trailing(axes, len(x.shape))
            and v.dtype == x.dtype == h.dtype):
        return None
    pshape = tuple(x.shape[len(x.shape) - len(axes):])
    p = producer.get(v)
    if p is None or p in put or uses[v] != 1:
        return None
    found = _ufunc_of(ops[p])
    if found is None or found[0] != "multiply":
        return None
    a, b = found[1]
    gv, w = (a, b) if _floats(b, pshape) and _floats(a, x.shape) else (b, a)
    if not (_floats(gv, x.shape) and _floats(w, pshape) and gv.dtype == w.dtype == x.dtype):
        return None
    members, sums, souts = [p, i], "", []
    for kind, summed in (("w", None), ("b", gv)):
        for j in readers.get(gv, ()):
            if j in put or j in members:
                continue
            if kind == "w":
                if _product(ops[j], gv) is not h or uses[ops[j].outs[0]] != 1:
                    continue
                s = readers.get(ops[j].outs[0], [None])[0]
                if s is None or s in put or _sum(ops[s], pshape) is not ops[j].outs[0]:
                    continue
                members += [j, s]
            else:
                if _sum(ops[j], pshape) is not summed:
                    continue
                s = j
                members.append(s)
            sums += kind
            souts.append(ops[s].outs[0])
            break
    dx, acc = op.outs[0], None
    if uses[dx] == 1:
        j = readers[dx][0]
        add = _ufunc_of(ops[j])
        if j not in put and add is not None and add[0] == "add" and len(ops[j].outs) == 1:
            other = add[1][1] if add[1][0] is dx else add[1][0]
            if other is not dx and _floats(other, x.shape) and other.dtype == x.dtype \
                    and _floats(ops[j].outs[0], x.shape):
                acc, dx = other, ops[j].outs[0]
                members.append(j)
    # the fused op goes where the last member was; an op between that reads a member's result
    # (directly or through other such ops) moves after it, and nothing between may write
    lo, hi = min(members), max(members)
    if any(j in put for j in range(lo, hi + 1)):  # another fused op's ops in between
        return None
    tainted = {o for j in members for o in ops[j].outs}
    after = []
    for j in range(lo, hi):
        if j in members:
            continue
        if ops[j].writes:
            return None
        if set(ops[j].inputs()) & tainted:
            after.append(j)
            tainted.update(ops[j].outs)
    if acc in tainted and acc is not None:  # made from a member's result: cannot come first
        return None
    # a column sum of dx (the bias gradient of the product dx also flows into) after it, with
    # nothing writing dx in between, is made in the same pass and defined at the fused op
    for j in readers.get(dx, ()):
        if j > hi and j not in put and _sum(ops[j], pshape) is dx:
            if not any(dx in ops[k].writes for k in range(hi + 1, j)):
                sums += "x"
                souts.append(ops[j].outs[0])
                after.append(j)  # dropped there (its result comes from the fused op)
            break
    fused = Op("func", "kernel.layer_norm_affine_vjp", _ln_affine_vjp_np,
               (gv, w, x, h, acc, axes, eps, sums), {}, (dx, *souts))
    moved = [ops[j] for j in after if j < hi]
    return members, [fused] + moved, after


def wrappers(lib, ffi) -> dict:
    """``{primitive or op name: function}``: the impls' signatures, running the C loops when
    they can, else the impl (``lib``, ``ffi``: the cffi module compiled from :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> sm = wrappers(mod.lib, mod.ffi)["softmax"]  # doctest: +SKIP
        >>> sm(np, np.zeros((2, 4)), axis=-1)  # doctest: +SKIP
        array([[0.25, 0.25, 0.25, 0.25],
               [0.25, 0.25, 0.25, 0.25]])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impls as registered (lowp wrappers)

    impl = {n: REGISTRY[n].impl for n in PRIMS}
    gemms = {dt: ffi.cast("void *", p) for dt, p in gemm_pointers().items()}  # cast once
    fb = ffi.from_buffer
    c = np.ascontiguousarray

    def fn(dt, name):
        return getattr(lib, f"{C_PREFIX[dt]}_{name}")

    def par(name, size):
        return size * _WORK[name] >= PARALLEL_WORK

    def rowwise(name, take_log):
        def call(xp, x, axis):
            if xp is not np or not _plain(x) or axis not in (-1, x.ndim - 1):
                return impl[name](xp, x, axis=axis)
            x = c(x)
            y = np.empty(x.shape, x.dtype)
            rows, n = _rows(x, 1)
            fn(x.dtype, "softmax")(fb(x), fb(y, require_writable=True), rows, n, take_log,
                                   par("softmax", x.size))
            return y
        call.__name__ = name
        return call

    def layer_norm(xp, x, axes, eps):
        k = len(axes)
        if (xp is not np or not _plain(x) or type(eps) not in (int, float)
                or not _trailing(axes, x.ndim)):
            return impl["layer_norm"](xp, x, axes=axes, eps=eps)
        x = c(x)
        y = np.empty(x.shape, x.dtype)
        rows, n = _rows(x, k)
        fn(x.dtype, "ln")(fb(x), fb(y, require_writable=True), rows, n, eps,
                          par("ln", x.size))
        return y

    def layer_norm_vjp_rows(v, x, out, axes, eps):
        k = len(axes)
        if (not (_plain(x) and type(v) is type(out) is np.ndarray)
                or not v.dtype == x.dtype == out.dtype or not v.shape == x.shape == out.shape
                or type(eps) not in (int, float) or not _trailing(axes, x.ndim)):
            return _ln_vjp_rows(v, x, out, axes, eps)
        v, x, out = c(v), c(x), c(out)
        o = np.empty(x.shape, x.dtype)
        rows, n = _rows(x, k)
        fn(x.dtype, "ln_vjp")(fb(v), fb(x), fb(out), fb(o, require_writable=True), rows, n,
                              eps, par("ln_vjp", x.size))
        return o

    def sum_to(xp, x, shape):
        shape = tuple(shape)
        lead = getattr(x, "ndim", 0) - len(shape)
        if (xp is not np or not _plain(x) or lead <= 0 or tuple(x.shape[lead:]) != shape):
            return impl["sum_to"](xp, x, shape=shape)
        cols = math.prod(shape)
        if cols < 2:  # one column: NumPy's (pairwise) sum of a contiguous run
            return impl["sum_to"](xp, x, shape=shape)
        x = c(x)
        o = np.empty(shape, x.dtype)
        rows = x.size // cols
        fn(x.dtype, "colsum")(fb(x), fb(o, require_writable=True), rows, cols,
                              par("colsum", x.size) and cols >= 32)
        return o

    def softmax_keys(xp, pt, bias, ones):
        """The attention impl's softmax step (``attention._softmax_keys``) in C where ``pt`` is
        a C-contiguous float32/float64 block and the bias one (keys, queries) block or None."""
        S, L = pt.shape[-2:]
        if L > _MAX_QUERIES:
            return attention._softmax_keys(xp, pt, bias, ones)
        b = bias
        if b is not None:  # one block, shared by every sample and head
            if (type(b) is not np.ndarray or b.dtype != pt.dtype or b.ndim < 2
                    or b.shape[-2:] != (S, L) or any(d != 1 for d in b.shape[:-2])):
                return attention._softmax_keys(xp, pt, bias, ones)
            b = c(b.reshape(S, L))
        if not (_plain(pt) and pt.flags.c_contiguous and pt.flags.writeable):
            return attention._softmax_keys(xp, pt, bias, ones)
        fn(pt.dtype, "softmax_keys")(fb(pt, require_writable=True),
                                     ffi.NULL if b is None else fb(b),
                                     pt.size // (S * L), S, L)
        return None

    def softmax_keys_vjp(xp, dst, pt, scale, ones):
        """``attention._softmax_keys_vjp`` in C (C-contiguous float32/float64 blocks)."""
        if not (_plain(dst) and dst.flags.c_contiguous and dst.flags.writeable
                and type(pt) is np.ndarray and pt.dtype == dst.dtype
                and pt.shape == dst.shape and pt.flags.c_contiguous):
            return attention._softmax_keys_vjp(xp, dst, pt, scale, ones)
        S, L = pt.shape[-2:]
        if L > _MAX_QUERIES:
            return attention._softmax_keys_vjp(xp, dst, pt, scale, ones)
        fn(pt.dtype, "softmax_keys_vjp")(fb(dst, require_writable=True), fb(pt),
                                         pt.size // (S * L), S, L, scale)
        return None

    def layouts(qkv, heads, seq_first):
        """(N, L, E, D) and the strides (in elements) of qkv's rows and samples and of o's."""
        N, L, E, D = attention._sizes(qkv.shape, heads, seq_first)
        E3 = 3 * E
        if seq_first:
            return (N, L, E, D), (N * E3, E3, N * E, E)
        return (N, L, E, D), (E3, L * E3, E, L * E)

    def blocks_in_c(qkv, heads, scale, dmask, seq_first):
        """The gemm for the attention's one-loop C path, or None where it does not apply."""
        if (dmask is not None or not _plain(qkv) or qkv.ndim != 3 or type(heads) is not int
                or heads < 1 or qkv.shape[-1] % (3 * heads)
                or not isinstance(scale, (int, float, np.floating))
                or qkv.shape[0 if seq_first else 1] > _MAX_QUERIES):
            return None
        return gemms.get(qkv.dtype)

    def parallel(N, L, H, D):
        """(run the blocks on OpenMP's threads, hold OpenBLAS at one thread meanwhile)"""
        par = N * H > 1 and N * H * L * L * D >= _ATT_PARALLEL_MACS
        return par, par and L * L * D > _BLAS_THREADED

    def self_attention(xp, qkv, bias, dmask, heads, scale, seq_first):
        if xp is not np or not _plain(qkv):
            return impl["self_attention"](xp, qkv, bias, dmask, heads=heads, scale=scale,
                                          seq_first=seq_first)

        def batched():  # the impl's batched steps, with the softmax step in C
            return attention._self_attention(xp, qkv, bias, dmask, heads=heads, scale=scale,
                                             seq_first=seq_first, softmax_keys=softmax_keys)

        gemm = blocks_in_c(qkv, heads, scale, dmask, seq_first)
        b = None
        if gemm is not None and bias is not None:
            L = qkv.shape[0] if seq_first else qkv.shape[1]
            if (type(bias) is np.ndarray and bias.dtype == qkv.dtype and bias.ndim >= 2
                    and bias.shape[-2:] == (L, L) and all(d == 1 for d in bias.shape[:-2])):
                b = c(bias.reshape(L, L).T)  # (keys, queries)
            else:
                gemm = None
        if gemm is None:
            return batched()
        qkv = c(qkv)
        (N, L, E, D), (rs, bs, ors, obs) = layouts(qkv, heads, seq_first)
        o = np.empty((L, N, E) if seq_first else (N, L, E), qkv.dtype)
        pt = np.empty((N, heads, L, L), qkv.dtype)
        par, hold = parallel(N, L, heads, D)
        with one_blas_thread(hold):
            rc = fn(qkv.dtype, "attention")(
                gemm, fb(qkv), ffi.NULL if b is None else fb(b), ffi.NULL,
                fb(o, require_writable=True), fb(pt, require_writable=True), N, L, heads, D,
                rs, bs, ors, obs, float(scale), par, SKIP_TILES)
        if rc < 0:
            return batched()
        TAKEN["attention"] += 1
        TAKEN["attention_tiles"] += rc
        return o, pt

    def self_attention_vjp(np_, g_o, gpt_all, qkv, dmask, out, heads, scale, seq_first):
        def batched():  # the fused NumPy kernel, with the softmax step's backward in C
            return attention._self_attention_vjp_np(np_, g_o, gpt_all, qkv, dmask, out, heads,
                                                    scale, seq_first,
                                                    softmax_keys_vjp=softmax_keys_vjp)

        gemm = blocks_in_c(qkv, heads, scale, dmask, seq_first)
        pt = out[1]
        if (gemm is None or gpt_all is not None or type(g_o) is not np.ndarray
                or g_o.dtype != qkv.dtype or type(pt) is not np.ndarray
                or pt.dtype != qkv.dtype or not pt.flags.c_contiguous
                or g_o.shape != qkv.shape[:2] + (qkv.shape[2] // 3,)):
            return batched()
        qkv, g_o = c(qkv), c(g_o)
        (N, L, _, D), (rs, bs, ors, obs) = layouts(qkv, heads, seq_first)
        if pt.shape != (N, heads, L, L):
            return batched()
        dx = np.empty(qkv.shape, qkv.dtype)
        par, hold = parallel(N, L, heads, D)
        with one_blas_thread(hold):
            rc = fn(qkv.dtype, "attention")(
                gemm, fb(qkv), ffi.NULL, fb(g_o),
                fb(dx, require_writable=True), fb(pt), N, L,
                heads, D, rs, bs, ors, obs, float(scale), par, SKIP_TILES)
        if rc < 0:
            return batched()
        TAKEN["attention_vjp"] += 1
        TAKEN["attention_vjp_tiles"] += rc
        return dx

    def affine_ok(x, axes, eps, *params):
        """Whether the fused layer norm's C loops apply: float32/float64 arrays of one dtype,
        the normalised axes trailing, each parameter of their shape."""
        return (_plain(x) and type(eps) in (int, float) and _trailing(axes, x.ndim)
                and all(type(p) is np.ndarray and p.dtype == x.dtype
                        and p.shape == x.shape[x.ndim - len(axes):] for p in params))

    def layer_norm_affine_vjp(g, w, x, h, acc, axes, eps, sums):
        """The backward of ``layer_norm_affine``'s y for its cotangent ``g``: ``dx`` (plus
        ``acc`` unless None), then the weight's and the bias's gradients and the column sums
        of ``dx`` as ``sums`` (a string of ``"w"``, ``"b"``, ``"x"``) asks, in its order; one
        array when there is one."""
        if not (affine_ok(x, axes, eps, w) and type(g) is type(h) is np.ndarray
                and g.dtype == h.dtype == x.dtype and g.shape == h.shape == x.shape
                and (acc is None or (type(acc) is np.ndarray and acc.dtype == x.dtype
                                     and acc.shape == x.shape))):
            return _ln_affine_vjp_np(g, w, x, h, acc, axes, eps, sums)
        g, w, x, h = c(g), c(w), c(x), c(h)
        dx = np.empty(x.shape, x.dtype)
        got = {k: np.empty(x.shape[x.ndim - len(axes):], x.dtype) for k in sums}
        rows, n = _rows(x, len(axes))
        fn(x.dtype, "ln_affine_vjp")(
            fb(g), fb(w), fb(x), fb(h), ffi.NULL if acc is None else fb(c(acc)),
            fb(dx, require_writable=True),
            *(fb(got[k], require_writable=True) if k in got else ffi.NULL for k in "wbx"),
            rows, n, eps, par("ln_vjp", x.size))
        TAKEN["layer_norm_affine_vjp"] += 1
        return dx if not sums else (dx, *(got[k] for k in sums))

    layer_norm_vjp_rows.chainrule_fresh = True  # new arrays, as the raw kernel returns
    self_attention_vjp.chainrule_fresh = True
    layer_norm_affine_vjp.chainrule_fresh = True
    return {"self_attention": self_attention, "kernel.self_attention_vjp": self_attention_vjp,
            "softmax": rowwise("softmax", 0), "log_softmax": rowwise("log_softmax", 1),
            "layer_norm": layer_norm, "sum_to": sum_to,
            "kernel.layer_norm_vjp_rows": layer_norm_vjp_rows,
            "kernel.layer_norm_affine_vjp": layer_norm_affine_vjp}
