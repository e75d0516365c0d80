"""Backend "c": ``linear`` as one call of the BLAS product with its bias folded in, and
``scatter_to`` of rows (an embedding's backward) as one C loop.

``linear`` (``primitives/linalg.py``): the impl computes ``x2 @ w.T`` (a fresh product) and
then adds the bias in a second pass over the output. Here the output's rows are first filled
with the bias and the product is added to them by the same ``cblas_?gemm`` NumPy calls (the
one in NumPy's bundled OpenBLAS, :func:`~chainrule.jit.cconv.gemm_pointers`) with ``beta =
1``, as PyTorch's ``addmm`` does: one pass over the output less. The operands are passed as
they lie, with the product's transpose flags: a weight that is the transpose of a
C-contiguous matrix (the backward's ``linear(g, w.T)``) and an input that is one are not
copied. Where OpenBLAS adds a long inner dimension in blocks (more than a few hundred), the
bias enters the first block's sum, not the end's, so the result can differ from the impl's
in the last bit; without a bias, the product is the impl's call. A call this path does not
cover (not float32/float64 of one dtype, an empty operand, another array module, no bundled
OpenBLAS) runs the impl.

``scatter_to`` with one integer index array over the first axis (``out[idx] += g`` with
repeated rows summed: the embedding's backward): a zeroed output and one pass over ``g``'s
rows adding each into its row, in index order, with no sort, no gather of ``g`` and no
temporaries. The impl (``primitives/movement.py``, ``rows_add``) sorts the indices and sums
each run with ``reduceat``, which adds in another order: the results agree within rounding,
and are the same bits run to run. An index out of range runs the impl, which
raises NumPy's IndexError.

A residual add of a ``linear``'s result, ``r + linear(x, w, b)`` with the product read by
nothing else (a pre-norm block's output projections), is one op,
``kernel.linear_add(x, w, b, r)`` (:func:`fold_residual_adds`, a pass over the IR before the
fusion groups): the output's rows are filled with ``r + b``, then the product is added by
the same ``cblas_?gemm`` with ``beta = 1``. That saves the add's pass (reading the product
and ``r``, writing a fresh result) and one op call; the sums are ``(r + b) + x w^T`` instead
of ``r + (x w^T + b)``, so results agree with the unfused program to rounding.

``TAKEN`` counts the calls each C path ran (tests read it).

**Two layouts of the product.** OpenBLAS's row-major ``y = x W^T`` is not equally fast for
every shape: for the MLP's layers ((128, 784) x (512, 784)^T float32) the product of the
transpose, ``y^T = W x^T`` (the same operands, the other order of the output), took 10% less
here, and for the transformer's (1024 rows) 25-70% more. So ``linear`` has two arms: "direct"
(the one call above) and "transposed": ``y^T`` into a scratch (its rows filled with the bias,
``beta = 1`` again), then one pass writing ``y`` as its transpose, in 32 x 32 tiles (8 x 8
blocks in AVX registers for float32). The bias enters at the same place in both arms, and
OpenBLAS adds each element's terms over ``k`` in the same order in its main tiles, so on the
MLP's float32 shapes the arms gave the same bits; but a row or column left over after the
tiles may take another kernel in one layout than in the other (float64 (65, 129) x (64,
129)^T differed in the last bit of its last row), so in general they agree within rounding,
and a run whose bits must not depend on timing sets ``CHAINRULE_JIT_LINEAR=direct``. Which
arm runs is picked once per (dtype, shape, transposes, bias, relu, OpenBLAS's thread count)
and process by a trial on the calls themselves (:data:`TRIAL` calls of each arm taking
turns after one untimed call each; "transposed" kept where its median is below
:data:`MARGIN` times the direct one's), made again after :data:`RECHECK` calls, then twice
as many, as ``cblas.Tuned`` does. A product below :data:`TRIAL_MACS` multiply-adds runs the
direct arm untried.
``CHAINRULE_JIT_LINEAR=direct|transposed`` (or :data:`LAYOUT`, read at each call) forces
an arm; the picks show in ``explain()`` (:func:`layout_notes`).

**One pool.** While NumPy's OpenBLAS is held at one thread (``cblas.Tuned``'s held setting,
or the user's) and OpenMP has several, a product of at least ``cblas.SPLIT_MACS``
multiply-adds is split over OpenMP's threads as ``cblas``'s ``matmul`` is: ``linear``,
``linear_relu`` and ``linear_add`` cut along the first dimension of their ``gemm`` call
(the output's rows in the direct arm, its features in the transposed arm; along the other
where that one is shorter than two blocks and than the other) into blocks of whole
:data:`ALIGN` tiles, one per thread, each thread filling its block with the bias (or ``r +
b``), making it with one single-thread ``cblas_?gemm`` and applying the ReLU, or
transposing its block of the scratch. Each block keeps the unsplit call's K loop: on the
transformer's and the MLP's shapes the results are the unsplit call's bits; OpenBLAS may
take other kernels for a small or odd block (K = 61 here), and those agree within rounding.
``TAKEN["split"]`` counts the split calls.
"""

from __future__ import annotations

import collections
import os
import statistics
import time

from ..backend import np
from . import cblas
from .cconv import blas_threads, gemm_pointers
from .creduce import uses_of
from .fuse import _ufunc_of, put_ops
from .ir import Op, Var
from .render_c import C_PREFIX, per_float_type

PRIMS = ("linear", "scatter_to")
FUNCS = ("kernel.linear_add", "kernel.linear_relu")

TAKEN: collections.Counter = collections.Counter()

# the arm every linear runs: "auto" (the trial's pick), "direct" or "transposed"
LAYOUT = [os.environ.get("CHAINRULE_JIT_LINEAR", "auto").strip().lower() or "auto"]
# timed calls of each arm per trial, the pick's margin, calls before the next trial
TRIAL, MARGIN, RECHECK = 7, 0.97, 2000
# multiply-adds below which a product runs the direct arm without a trial (~20 us)
TRIAL_MACS = 1 << 20
# a split product's blocks of rows or output features are a multiple of this (whole tiles of
# OpenBLAS's kernels; the split's threshold is cblas.SPLIT_MACS, read at each call)
ALIGN = 16
# per (dtype, m, n, k, x transposed?, w transposed?, bias?, relu?, OpenBLAS threads): _Layout
PICKS: dict = {}


class _Layout:
    """One shape's trial and pick (see the module's text)."""

    __slots__ = ("note", "pick", "times", "trials", "turn", "until")

    def __init__(self):
        self.pick, self.times, self.turn = None, ([], []), 0
        self.until, self.trials, self.note = 0, 0, "being tried"

    def arm(self) -> int:
        """0 (direct) or 1 (transposed) for the next call; -1-arm for a trial's untimed
        first call of an arm."""
        if self.pick is not None:
            self.until -= 1
            if self.until >= 0:
                return self.pick
            self.pick, self.times, self.turn = None, ([], []), 0  # time for the next trial
        self.turn += 1
        arm = self.turn % 2
        return -1 - arm if self.turn <= 2 else arm

    def timed(self, arm: int, seconds: float) -> None:
        self.times[arm].append(seconds)
        if min(len(v) for v in self.times) >= TRIAL:
            d, t = (statistics.median(v) for v in self.times)
            self.pick = 1 if t < MARGIN * d else 0
            self.until = RECHECK << self.trials
            self.trials += 1
            self.note = (f"{('direct', 'transposed')[self.pick]} (trial {self.trials}: "
                         f"direct {d * 1e6:.0f} us, transposed {t * 1e6:.0f} us)")


def layout_notes(keys=None) -> list:
    """Lines saying which arm each product shape of ``linear`` runs and why (all shapes
    tried in this process, or those in ``keys``); ``explain()`` shows a program's.

    Example:
        >>> isinstance(layout_notes(), list)
        True
    """
    out = []
    for key in sorted(PICKS if keys is None else keys, key=str):
        if key not in PICKS:
            continue
        dt, m, n, k, ta, tb, bias, relu, threads = key
        out.append(f"linear ({m}, {k}){'^T' if ta else ''} x ({n}, {k})"
                   f"{'' if tb else '^T'} {dt}{' + bias' if bias else ''}"
                   f"{', relu' if relu else ''}, OpenBLAS "
                   f"{threads} thread{'s' if threads != 1 else ''}: {PICKS[key].note}")
    return out


def _linear_relu_np(x, w, b):
    """``kernel.linear_relu`` as the unfused program computes it: the impls of ``linear``
    and ``relu``."""
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impls as registered

    return REGISTRY["relu"].impl(np, REGISTRY["linear"].impl(np, x, w, b))


def fuse_linear_relu(g):
    """``g`` with each ``relu(linear(x, w, b))`` whose product is read by nothing else as one
    op ``kernel.linear_relu(x, w, b)`` at the product's place, for backend "c": the relu is
    made in the pass that writes the product's output (the transposed arm's transposing
    pass, or one pass over the output still in cache after the direct arm's call) instead
    of a separate NumPy ``maximum`` over a fresh array, and so is the bias, added after the
    product as the impl adds it (not folded into the product's sum as ``linear`` folds it):
    ``relu`` is NumPy's ``maximum(y + b, 0)`` in both arms (a NaN and -0 stay), so the
    direct arm gives the bits of the impls of ``linear`` then ``relu`` (the numpy backend's),
    the transposed arm those where its product's sums agree (the MLP's shapes here).

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x, w: cr.nn.functional.relu(cr.nn.functional.linear(x, w)),
        ...            backend="numpy")
        >>> _ = f(cr.ones((2, 3)), cr.ones((4, 3)))
        >>> [op.name for op in fuse_linear_relu(f.graph_ir()).ops]
        ['kernel.linear_relu']
    """
    ops = g.ops
    uses, _ = uses_of(g)
    reader = {}
    for i, op in enumerate(ops):
        for v in op.inputs():
            reader.setdefault(v, i)
    put: dict = {}
    for i, op in enumerate(ops):
        if (op.kind != "prim" or op.name != "linear" or op.writes or op.kwargs
                or len(op.outs) != 1 or len(op.args) != 4 or op.args[0] is not np):
            continue
        y = op.outs[0]
        j = reader.get(y)
        if uses[y] != 1 or j is None or j in put:
            continue
        r = ops[j]
        if (r.kind != "prim" or r.name != "relu" or r.writes or r.kwargs or len(r.outs) != 1
                or tuple(r.args) != (np, y)):
            continue
        put[i] = Op("func", "kernel.linear_relu", _linear_relu_np, tuple(op.args[1:]), {},
                    (r.outs[0],))
        put[j] = None
    return put_ops(g, put)


# cblas's constants (row major, no transpose, transpose)
_ROW, _N, _T = 101, 111, 112

# d (C, R) = s (R, C)^T, rows ls (s) and ld (d) apart (+ bias[r] on row r, then relu, where
# asked): tiles of 32 x 32 (both
# in L1), 8 x 8 blocks of float32 through AVX registers where the compiler targets AVX
# (-march=native), else element by element
_TRANSPOSE = """
#ifdef __AVX__
#include <immintrin.h>
/* bias (or NULL): bias[i] added to row i of s; relu: then max(0, v) as MAXPS computes it
   (the second operand where either is NaN or both are zeros), which is NumPy's
   maximum(v, 0): NaN and -0 stay */
static inline void f32_t8(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld, int relu,
                          const float *bias)
{
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ls);
    __m256 r2 = _mm256_loadu_ps(s + 2 * ls), r3 = _mm256_loadu_ps(s + 3 * ls);
    __m256 r4 = _mm256_loadu_ps(s + 4 * ls), r5 = _mm256_loadu_ps(s + 5 * ls);
    __m256 r6 = _mm256_loadu_ps(s + 6 * ls), r7 = _mm256_loadu_ps(s + 7 * ls);
    if (bias) {
        r0 = _mm256_add_ps(r0, _mm256_set1_ps(bias[0]));
        r1 = _mm256_add_ps(r1, _mm256_set1_ps(bias[1]));
        r2 = _mm256_add_ps(r2, _mm256_set1_ps(bias[2]));
        r3 = _mm256_add_ps(r3, _mm256_set1_ps(bias[3]));
        r4 = _mm256_add_ps(r4, _mm256_set1_ps(bias[4]));
        r5 = _mm256_add_ps(r5, _mm256_set1_ps(bias[5]));
        r6 = _mm256_add_ps(r6, _mm256_set1_ps(bias[6]));
        r7 = _mm256_add_ps(r7, _mm256_set1_ps(bias[7]));
    }
    if (relu) {
        const __m256 z = _mm256_setzero_ps();
        r0 = _mm256_max_ps(z, r0), r1 = _mm256_max_ps(z, r1), r2 = _mm256_max_ps(z, r2);
        r3 = _mm256_max_ps(z, r3), r4 = _mm256_max_ps(z, r4), r5 = _mm256_max_ps(z, r5);
        r6 = _mm256_max_ps(z, r6), r7 = _mm256_max_ps(z, r7);
    }
    __m256 a0 = _mm256_unpacklo_ps(r0, r1), a1 = _mm256_unpackhi_ps(r0, r1);
    __m256 a2 = _mm256_unpacklo_ps(r2, r3), a3 = _mm256_unpackhi_ps(r2, r3);
    __m256 a4 = _mm256_unpacklo_ps(r4, r5), a5 = _mm256_unpackhi_ps(r4, r5);
    __m256 a6 = _mm256_unpacklo_ps(r6, r7), a7 = _mm256_unpackhi_ps(r6, r7);
    __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
    __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
    __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
    __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(b0, b4, 0x20));
    _mm256_storeu_ps(d + ld, _mm256_permute2f128_ps(b1, b5, 0x20));
    _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(b2, b6, 0x20));
    _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(b3, b7, 0x20));
    _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(b0, b4, 0x31));
    _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(b1, b5, 0x31));
    _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(b2, b6, 0x31));
    _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(b3, b7, 0x31));
}
#endif

#define TRANSPOSE(NAME, T, BLOCK8)                                                         \
static void NAME##_transpose(const T *restrict s, ptrdiff_t ls, T *restrict d, ptrdiff_t ld, \
                             ptrdiff_t R, ptrdiff_t C, int relu, const T *restrict bias)    \
{                                                                                          \
    for (ptrdiff_t r0 = 0; r0 < R; r0 += 32) {                                             \
        const ptrdiff_t r1 = r0 + 32 < R ? r0 + 32 : R;                                    \
        for (ptrdiff_t c0 = 0; c0 < C; c0 += 32) {                                         \
            const ptrdiff_t c1 = c0 + 32 < C ? c0 + 32 : C;                                \
            ptrdiff_t r = r0;                                                              \
            if (BLOCK8 && r1 - r0 == 32 && c1 - c0 == 32) {                                \
                for (; r < r1; r += 8)                                                     \
                    for (ptrdiff_t c = c0; c < c1; c += 8)                                 \
                        BLOCK(s + r * ls + c, ls, d + c * ld + r, ld, relu,                \
                              bias ? bias + r : NULL);                                     \
                continue;                                                                  \
            }                                                                              \
            for (ptrdiff_t c = c0; c < c1; c++)                                            \
                for (r = r0; r < r1; r++) {                                                \
                    const T v = bias ? s[r * ls + c] + bias[r] : s[r * ls + c];            \
                    d[c * ld + r] = (!relu || v >= 0 || v != v) ? v : (T)0;                \
                }                                                                          \
        }                                                                                  \
    }                                                                                      \
}
#ifdef __AVX__
#define BLOCK f32_t8
TRANSPOSE(f32, float, 1)
#else
#define BLOCK(s, ls, d, ld, relu, bias) ((void)0)
TRANSPOSE(f32, float, 0)
#endif
#undef BLOCK
#define BLOCK(s, ls, d, ld, relu, bias) ((void)0)
TRANSPOSE(f64, double, 0)
#undef BLOCK
"""

_C = """
typedef void (*NAME_mm_t)(int, int, int, long long, long long, long long, T, const T *,
                          long long, const T *, long long, T, T *, long long);

/* The products' blocks over OpenMP's threads: [lo, hi) of D items (rows or output features)
   for thread id of nt, in whole tiles of align items; all of them where nt is 1 */
static void NAME_block(ptrdiff_t D, ptrdiff_t align, int nt, int id, ptrdiff_t *lo,
                       ptrdiff_t *hi)
{
    const ptrdiff_t tiles = (D + align - 1) / align;
    const ptrdiff_t l = tiles * id / nt * align, h = tiles * (id + 1) / nt * align;
    *lo = l < D ? l : D;
    *hi = h < D ? h : D;
}

/* rows m0..m1, columns n0..n1 of y (M, N) = [r +] x @ op(w) [+ b]: the block's rows filled
   with b (r + b, r alone with r), then gemm with beta 1; with relu (no r), the impl's order
   instead: the product, then y + b and relu in one pass over the block */
static void NAME_lin_block(NAME_mm_t gemm, const T *x, const T *w, const T *b, const T *r,
                           T *y, ptrdiff_t N, ptrdiff_t K, int ta, ptrdiff_t lda, int tb,
                           ptrdiff_t ldb, int relu, ptrdiff_t m0, ptrdiff_t m1, ptrdiff_t n0,
                           ptrdiff_t n1)
{
    const ptrdiff_t w_ = n1 - n0;
    const int fold = r || (b && !relu);
    if (r && b) {
        for (ptrdiff_t m = m0; m < m1; m++) {
            T *restrict d = y + m * N;
            const T *restrict s = r + m * N;
            #pragma omp simd
            for (ptrdiff_t n = n0; n < n1; n++)
                d[n] = s[n] + b[n];
        }
    } else if (r) {
        for (ptrdiff_t m = m0; m < m1; m++)
            memcpy(y + m * N + n0, r + m * N + n0, sizeof(T) * w_);
    } else if (fold) {
        for (ptrdiff_t m = m0; m < m1; m++)
            memcpy(y + m * N + n0, b + n0, sizeof(T) * w_);
    }
    /* rows m0.. of op(x) (x's columns where transposed), columns n0.. of op(w) (w's rows
       where op transposes it) */
    gemm(101, ta, tb, m1 - m0, w_, K, (T)1, x + (ta == 111 ? m0 * lda : m0), lda,
         w + (tb == 112 ? n0 * ldb : n0), ldb, fold ? (T)1 : (T)0, y + m0 * N + n0, N);
    if (relu)  /* NumPy's maximum(y + b, 0): a NaN stays, -0 stays */
        for (ptrdiff_t m = m0; m < m1; m++) {
            T *restrict q = y + m * N;
            if (b) {
                #pragma omp simd
                for (ptrdiff_t n = n0; n < n1; n++) {
                    const T v = q[n] + b[n];
                    q[n] = (v >= 0 || v != v) ? v : (T)0;
                }
            } else {
                #pragma omp simd
                for (ptrdiff_t n = n0; n < n1; n++)
                    q[n] = (q[n] >= 0 || q[n] != q[n]) ? q[n] : (T)0;
            }
        }
}

/* y (M, N) = [r +] x @ op(w) [+ b] (NAME_lin_block); nt > 1: over nt OpenMP threads, a block
   of y's rows (by_rows) or columns per thread, whole tiles of align, each thread's block
   one gemm call (OpenBLAS held at one thread by the caller) */
static void NAME_lin_split(NAME_mm_t gemm, const T *x, const T *w, const T *b, const T *r,
                           T *y, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, ptrdiff_t lda,
                           int tb, ptrdiff_t ldb, int relu, int nt, int by_rows, int align)
{
    if (nt <= 1) {
        NAME_lin_block(gemm, x, w, b, r, y, N, K, ta, lda, tb, ldb, relu, 0, M, 0, N);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        ptrdiff_t lo, hi;
        NAME_block(by_rows ? M : N, align, omp_get_num_threads(), omp_get_thread_num(), &lo,
                   &hi);
        if (hi > lo)
            NAME_lin_block(gemm, x, w, b, r, y, N, K, ta, lda, tb, ldb, relu,
                           by_rows ? lo : 0, by_rows ? hi : M, by_rows ? 0 : lo,
                           by_rows ? N : hi);
    }
}

void NAME_linear(void *gemm_, const void *x_, const void *w_, const void *b_, void *y_,
                 ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, ptrdiff_t lda, int tb,
                 ptrdiff_t ldb, int relu, int nt, int by_rows, int align)
{
    NAME_lin_split((NAME_mm_t)gemm_, (const T *)x_, (const T *)w_, (const T *)b_, NULL,
                   (T *)y_, M, N, K, ta, lda, tb, ldb, relu, nt, by_rows, align);
}

/* features f0..f1 and rows m0..m1 of y (M, N) = x @ op(w) (+ b) made as its transpose:
   t (N, M) = op(w) op(x)^T into the scratch t (rows filled with b[n], gemm with beta 1),
   then y = t^T in tiles; with relu, the impl's order: the product, then y = relu(t^T + b)
   in the transposing pass */
static void NAME_lint_block(NAME_mm_t gemm, const T *x, const T *w, const T *b, T *y, T *t,
                            ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, ptrdiff_t lda,
                            int tb, ptrdiff_t ldb, int relu, ptrdiff_t m0, ptrdiff_t m1,
                            ptrdiff_t f0, ptrdiff_t f1)
{
    const int fold = b && !relu;
    if (fold)
        for (ptrdiff_t n = f0; n < f1; n++) {
            const T v = b[n];
            T *restrict q = t + n * M;
            for (ptrdiff_t m = m0; m < m1; m++)
                q[m] = v;
        }
    /* w as A (not transposed where it lies as its own rows), x as op(B) */
    gemm(101, tb == 112 ? 111 : 112, ta == 112 ? 111 : 112, f1 - f0, m1 - m0, K, (T)1,
         w + (tb == 112 ? f0 * ldb : f0), ldb, x + (ta == 111 ? m0 * lda : m0), lda,
         fold ? (T)1 : (T)0, t + f0 * M + m0, M);
    NAME_transpose(t + f0 * M + m0, M, y + m0 * N + f0, N, f1 - f0, m1 - m0, relu,
                   relu && b ? b + f0 : NULL);
}

void NAME_linear_t(void *gemm_, const void *x_, const void *w_, const void *b_, void *y_,
                   void *t_, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, ptrdiff_t lda,
                   int tb, ptrdiff_t ldb, int relu, int nt, int by_rows, int align)
{
    const NAME_mm_t gemm = (NAME_mm_t)gemm_;
    const T *x = (const T *)x_, *w = (const T *)w_, *b = (const T *)b_;
    T *y = (T *)y_, *t = (T *)t_;
    if (nt <= 1) {
        NAME_lint_block(gemm, x, w, b, y, t, M, N, K, ta, lda, tb, ldb, relu, 0, M, 0, N);
        return;
    }
    #pragma omp parallel num_threads(nt)
    {
        ptrdiff_t lo, hi;
        NAME_block(by_rows ? M : N, align, omp_get_num_threads(), omp_get_thread_num(), &lo,
                   &hi);
        if (hi > lo)
            NAME_lint_block(gemm, x, w, b, y, t, M, N, K, ta, lda, tb, ldb, relu,
                            by_rows ? lo : 0, by_rows ? hi : M, by_rows ? 0 : lo,
                            by_rows ? N : hi);
    }
}

/* o (rows, cols) = 0, then o[idx[k]] += g[k] for k in order; -1 (o part done) when an
   index is out of range (negative ones count from the end, as NumPy's do) */
int NAME_rows_add(const void *g_, const void *idx_, void *o_, ptrdiff_t n, ptrdiff_t rows,
                  ptrdiff_t cols)
{
    const T *restrict g = (const T *)g_;
    const long long *restrict idx = (const long long *)idx_;
    T *restrict o = (T *)o_;
    memset(o, 0, sizeof(T) * rows * cols);
    for (ptrdiff_t k = 0; k < n; k++) {
        long long r = idx[k];
        if (r < 0)
            r += rows;
        if (r < 0 || r >= rows)
            return -1;
        T *restrict d = o + r * cols;
        const T *restrict s = g + k * cols;
        #pragma omp simd
        for (ptrdiff_t j = 0; j < cols; j++)
            d[j] += s[j];
    }
    return 0;
}
"""

_C_ADD = """
/* y (M, N) = r + b + x @ op(w): y's rows filled with r + b (r alone without b), then gemm
   with beta 1; over nt OpenMP threads as NAME_linear */
void NAME_linear_add(void *gemm_, const void *x_, const void *w_, const void *b_,
                     const void *r_, void *y_, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta,
                     ptrdiff_t lda, int tb, ptrdiff_t ldb, int nt, int by_rows, int align)
{
    NAME_lin_split((NAME_mm_t)gemm_, (const T *)x_, (const T *)w_, (const T *)b_,
                   (const T *)r_, (T *)y_, M, N, K, ta, lda, tb, ldb, 0, nt, by_rows, align);
}
"""

_DECL = """
void NAME_linear_add(void *, const void *, const void *, const void *, const void *, void *,
                     ptrdiff_t, ptrdiff_t, ptrdiff_t, int, ptrdiff_t, int, ptrdiff_t, int, int,
                     int);
void NAME_linear(void *, const void *, const void *, const void *, void *, ptrdiff_t,
                 ptrdiff_t, ptrdiff_t, int, ptrdiff_t, int, ptrdiff_t, int, int, int, int);
void NAME_linear_t(void *, const void *, const void *, const void *, void *, void *,
                   ptrdiff_t, ptrdiff_t, ptrdiff_t, int, ptrdiff_t, int, ptrdiff_t, int, int,
                   int, int);
int NAME_rows_add(const void *, const void *, void *, ptrdiff_t, ptrdiff_t, ptrdiff_t);
"""



def source() -> tuple[str, str]:
    """(declarations, C source) of the loops for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_linear(" in src and "int f64_rows_add(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C + _C_ADD)
    return (decl + "int cgemm_max_threads(void);\n",
            "#include <omp.h>\n#include <string.h>\n"
            "int cgemm_max_threads(void) { return omp_get_max_threads(); }\n"
            + _TRANSPOSE + src)


def _operand(a):
    """(C-contiguous array, transposed?, leading dim) of a 2-d operand as a product reads it:
    ``a`` itself, or the C-contiguous transpose it is a view of (no copy), else a copy."""
    if a.flags.c_contiguous:
        return a, False, a.shape[1]
    if a.T.flags.c_contiguous:
        return a.T, True, a.shape[0]
    return np.ascontiguousarray(a), False, a.shape[1]


def wrappers(lib, ffi) -> dict:
    """``{primitive name: impl}``: the impls' signatures, running the C paths where they apply,
    else the impl (``lib``, ``ffi``: the cffi module compiled from :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> lin = wrappers(mod.lib, mod.ffi)["linear"]  # doctest: +SKIP
        >>> lin(np, np.ones((2, 3)), np.ones((4, 3)), np.arange(4.0))  # doctest: +SKIP
        array([[3., 4., 5., 6.],
               [3., 4., 5., 6.]])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impls as registered
    from ..primitives.movement import IndexArg  # noqa: PLC0415

    impl = {n: REGISTRY[n].impl for n in PRIMS}
    fb = ffi.from_buffer
    gemms = {dt: ffi.cast("void *", p) for dt, p in gemm_pointers().items()}  # cast once
    threads = blas_threads()
    seen: set = set()  # the shapes this program's linear ran (its explain() lines)
    # each dtype's C functions, looked up once (not a formatted getattr on every call)
    fns = {dt: {f: getattr(lib, f"{p}_{f}") for f in ("linear", "linear_t", "linear_add",
                                                        "rows_add")}
           for dt, p in C_PREFIX.items()}

    def _threads(m, n, k):
        """OpenMP's thread count where a product of ``m x n x k`` is split over them (OpenBLAS
        held at one thread, OpenMP with several, the product big and long enough), else 1."""
        if (m * n * k < cblas.SPLIT_MACS or max(m, n) < 2 * ALIGN or threads is None
                or threads[0]() != 1):
            return 1
        return max(lib.cgemm_max_threads(), 1)

    def linear(xp, x, w, b):
        return _linear(xp, x, w, b, 0)

    def linear_relu(x, w, b):
        return _linear(np, x, w, b, 1)

    def _operands(x, w, b):
        """``(dt, x rows, x transposed?, lda, w, w transposed?, ldb, m, n, k, bias pointer)``
        for the C products, or None where the impl must run."""
        dt = getattr(x, "dtype", None)
        if (type(x) is not np.ndarray or dt not in C_PREFIX or dt not in gemms
                or type(w) is not np.ndarray or w.dtype != dt or w.ndim != 2 or x.ndim < 1
                or x.shape[-1] != w.shape[1] or x.size == 0 or w.size == 0
                or (b is not None and (type(b) is not np.ndarray or b.dtype != dt
                                       or b.shape != (w.shape[0],)))):
            return None
        n, k = w.shape
        x2 = x.reshape(-1, k)
        xa, ta, lda = _operand(x2)
        wa, wt, ldb = _operand(w)  # y = x @ w.T: w as it lies is op(B) transposed
        bp = ffi.NULL if b is None else fb(np.ascontiguousarray(b))
        return (dt, fb(xa), _T if ta else _N, lda, fb(wa), _N if wt else _T, ldb, x2.shape[0], n,
                k, bp)

    def _linear(xp, x, w, b, relu):
        ops = _operands(x, w, b) if xp is np else None
        if ops is None:
            return _linear_relu_np(x, w, b) if relu else impl["linear"](xp, x, w, b)
        dt, xa, ta, lda, wa, tb, ldb, m, n, k, bp = ops
        y = np.empty((m, n), dt)
        mode, lay = LAYOUT[0], None
        if mode == "auto":
            arm = 0
            if m * n * k >= TRIAL_MACS:
                key = (dt, m, n, k, ta == _T, tb == _N, b is not None, relu,
                       threads[0]() if threads is not None else 1)
                seen.add(key)
                lay = PICKS.get(key)
                if lay is None:
                    lay = PICKS[key] = _Layout()
                arm = lay.arm()
                if lay.pick is not None:
                    lay = None  # not a trial call: nothing to time
        elif mode in ("direct", "transposed"):
            arm = int(mode == "transposed")
        else:
            raise ValueError(f"CHAINRULE_JIT_LINEAR={mode!r}: expected 'auto', 'direct' or "
                             "'transposed'")
        a = arm if arm >= 0 else -1 - arm
        nt = _threads(m, n, k)
        t0 = time.perf_counter() if lay is not None else 0.0
        if a:
            fns[dt]["linear_t"](gemms[dt], xa, wa, bp, fb(y, require_writable=True),
                                fb(np.empty((n, m), dt), require_writable=True),
                                m, n, k, ta, lda, tb, ldb, relu, nt, _by_rows(n, m) ^ 1, ALIGN)
        else:
            fns[dt]["linear"](gemms[dt], xa, wa, bp, fb(y, require_writable=True),
                              m, n, k, ta, lda, tb, ldb, relu, nt, _by_rows(m, n), ALIGN)
        if lay is not None and arm >= 0:
            lay.timed(arm, time.perf_counter() - t0)
        TAKEN["linear_relu" if relu else "linear"] += 1
        TAKEN["linear_t"] += a
        TAKEN["split"] += nt > 1
        return y.reshape(x.shape[:-1] + (n,)) if x.ndim != 2 else y

    def scatter_to(xp, g, *arrays, shape, index):
        shape = tuple(shape)
        idx = arrays[0] if len(arrays) == 1 else None
        dt = getattr(g, "dtype", None)
        if (xp is not np or idx is None or not isinstance(index, tuple) or len(index) != 1
                or type(index[0]) is not IndexArg
                or type(g) is not np.ndarray or dt not in C_PREFIX or type(idx) is not np.ndarray
                or idx.dtype.kind not in "iu" or (idx.dtype.kind == "u" and idx.itemsize >= 8)
                or not shape or g.shape != idx.shape + shape[1:] or 0 in shape):
            return impl["scatter_to"](xp, g, *arrays, shape=shape, index=index)
        out = np.empty(shape, dt)
        ix = np.ascontiguousarray(idx, np.int64).reshape(-1)
        gc = np.ascontiguousarray(g)
        rows = shape[0]
        if fns[dt]["rows_add"](fb(gc), fb(ix), fb(out, require_writable=True), ix.size, rows,
                               out.size // rows) != 0:
            return impl["scatter_to"](xp, g, *arrays, shape=shape, index=index)
        TAKEN["scatter_to"] += 1
        return out

    def linear_add(x, w, b, r):
        """``r + linear(x, w, b)`` (``kernel.linear_add``), r of the result's shape."""
        ops = _operands(x, w, b)
        if (ops is None or type(r) is not np.ndarray or r.dtype != ops[0]
                or r.shape != x.shape[:-1] + (w.shape[0],)):
            return _linear_add_np(x, w, b, r)
        dt, xa, ta, lda, wa, tb, ldb, m, n, k, bp = ops
        y = np.empty(r.shape, dt)
        nt = _threads(m, n, k)
        fns[dt]["linear_add"](gemms[dt], xa, wa, bp, fb(np.ascontiguousarray(r)),
                              fb(y, require_writable=True), m, n, k, ta, lda, tb, ldb, nt,
                              _by_rows(m, n), ALIGN)
        TAKEN["linear_add"] += 1
        TAKEN["split"] += nt > 1
        return y

    linear_add.chainrule_fresh = True  # a new array, as the unfused add returns
    linear.notes = lambda: layout_notes(seen)
    return {"linear": linear, "kernel.linear_relu": linear_relu, "scatter_to": scatter_to,
            "kernel.linear_add": linear_add}


def _by_rows(first: int, other: int) -> int:
    """1 where a split product is cut along the first dimension of its ``cblas_?gemm`` call
    (the output's rows in the direct arm, its features in the transposed one): each block
    then gives the unsplit call's bits (OpenBLAS's row-major kernels; float64 blocks cut
    along the other dimension differed in the last bit, docs/jit.md "One pool"); along
    the other only where the first is shorter than two tiles and than the other."""
    return int(first >= 2 * ALIGN or first >= other)


def _linear_add_np(x, w, b, r):
    """The unfused ops: ``r + linear(x, w, b)`` with the impls."""
    from ..primitives import REGISTRY  # noqa: PLC0415

    return np.add(r, REGISTRY["linear"].impl(np, x, w, b))


def fold_residual_adds(g):
    """``g`` with each ``add(r, linear(x, w, b))`` whose product nothing else reads (nor is an
    output) made one op ``kernel.linear_add(x, w, b, r)`` at the add's place, for backend "c"
    (``r`` a float32/float64 array of the result's shape and dtype; no op in between may
    write ``x``, ``w``, ``b`` or ``r``).

    Example:
        >>> import chainrule as cr
        >>> lin = cr.nn.Linear(8, 8)
        >>> f = cr.jit(lambda x: (x + lin(x)).sum(), backend="numpy")
        >>> _ = f(cr.ones((4, 8))), f(cr.ones((4, 8)))
        >>> [op.name for op in fold_residual_adds(f.graph_ir()).ops][:1]
        ['kernel.linear_add']
    """
    ops = g.ops
    uses, producer = uses_of(g)
    put: dict = {}
    for j, op in enumerate(ops):
        found = _ufunc_of(op)
        if (found is None or found[0] != "add" or op.writes or len(op.outs) != 1
                or op.kwargs):
            continue
        out = op.outs[0]
        for y, r in (found[1], found[1][::-1]):
            p = producer.get(y)
            if (p is None or p in put or ops[p].kind != "prim" or ops[p].name != "linear"
                    or ops[p].writes or ops[p].kwargs or len(ops[p].args) != 4
                    or uses[y] != 1 or r is y or not _float_var(r, out)
                    or not _float_var(y, out)):
                continue
            x, w, b = ops[p].args[1:]
            mine = {v for v in (x, w, b, r) if isinstance(v, Var)}
            if any(set(ops[k].writes) & mine for k in range(p + 1, j)):
                continue
            put[p] = None
            put[j] = Op("func", "kernel.linear_add", _linear_add_np, (x, w, b, r), {}, (out,))
            break
    return put_ops(g, put)


def _float_var(v, like) -> bool:
    """Whether ``v`` is a float32/float64 array Var of ``like``'s shape and dtype."""
    return (isinstance(v, Var) and v.scalar is None and v.shape == like.shape
            and v.dtype == like.dtype and str(v.dtype) in ("float32", "float64"))
