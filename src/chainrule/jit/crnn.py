"""Backend "c": the LSTM scan's per-step pointwise work (forward: the gate activations and the
cell update; backward: the fused backward step) as one C loop per step, and the whole scan
(forward, and the raw backward kernel's loop) as one C call that also makes the
hidden-to-hidden products, through the ``cblas_?gemm`` of the OpenBLAS NumPy bundles
(:func:`chainrule.jit.cconv.gemm_pointers`; without it the time loop stays in Python with
NumPy's products between the C steps). The GRU's scan and raw backward kernel
(``gru_scan``, ``gru_backward``) run the same way, as whole scans only (without that OpenBLAS,
the NumPy versions).

A scan with at least :data:`_PARALLEL_MACS` multiply-adds can run on OpenMP's threads,
split in one of two ways. Over batch rows (the GRU's, and the LSTM's by default): row b
depends only on row b through the whole recurrence, so each thread takes a band of rows for
the whole sequence (its rows' product, then its rows' gates): one wake-up per scan, no
barrier per step, but each thread reads all of W each step. Over hidden units (the LSTM's
with :func:`lstm_split` ``"units"``, ``CHAINRULE_JIT_LSTM_SPLIT=units``): each thread owns a
block of units, their four gate columns (copied once per call into a block of columns of its
own, so that a step is one product per thread) and their columns of h_t and c_t; per step it
makes its columns' product from the whole h_{t-1}, its gates, then meets the others at a
barrier (the backward: its units' step, a barrier, its columns of d h). Between them the
threads read W once per step, and each one's product is 10-15% cheaper than a band's; but a
thread descheduled by a busy host stalls every step of the others (docs/jit.md).

A scan splits while OpenBLAS is on one thread (backend c's one-thread setting,
:mod:`~chainrule.jit.cblas`); with OpenBLAS on several, the scan stays on one thread and
OpenBLAS threads each step's product, which measured faster (:func:`_scan_threads`). A split
scan holds OpenBLAS at one thread for the call (and sets it back after): from two threads
each asking it for two, the benchmark's scan took 1.8 s instead of 24 ms. The split scans do
per element what the one-thread scan does, but a band's or a block's product may take another
OpenBLAS kernel than the whole batch's (its small-matrix path), so they agree at float
rounding, bitwise only where the kernels match (tests/jit/test_crnn_threads.py).

The NumPy versions (``primitives/recurrent.py``: the ``lstm_scan`` impl and the raw backward
kernel ``lstm_backward``, which the tracer records as one op) make ten to fifteen passes per
step over (B, 4H) and (B, H) blocks, each a separate call. The C step makes the same
operations per element, in the same order and dtype (the sigmoid gates as
``tanh(x * 0.5) * 0.5 + 0.5`` as there, no FMA contraction), in one pass per block; only
``tanh`` is the C library's (vectorised by glibc's libmvec), within an ulp or two of NumPy's,
so results match the NumPy backend to float rounding, not bitwise.

A call the loops do not cover (not float32/float64, another array module) runs the NumPy
version; an empty sequence, batch or state runs the LSTM's per-step loops, the GRU's NumPy
versions.
"""

from __future__ import annotations

import os
import statistics
import time

from ..backend import np
from ..primitives.recurrent import _gru_backward_raw, _lstm_backward_raw, _steps
from .cconv import blas_threads, gemm_pointers, one_blas_thread
from .render_c import C_PREFIX, per_float_type

PRIMS = ("lstm_scan", "gru_scan")
# the recorded raw-kernel ops this module replaces
FUNCS = ("kernel.lstm_backward", "kernel.gru_backward")

_C = """
/* the gates of one forward step for hidden units [j0, j0 + nh): the pre-activations come
   from p (row b's gate k at p[b * ldp + k * pk + j], the product h_{t-1} W^T's columns) plus
   x_t's; activated, they go to a (B, 4H); then c_t and h_t of those units. p may be a's own
   block (ldp G, pk H, j0 0: in place; each element is read before it is written, by the same
   iteration) */
static void NAME_lstm_gates(const T *p, ptrdiff_t ldp, ptrdiff_t pk, void *a_,
                            const void *xg_, const void *c_, void *cn_, void *hn_,
                            ptrdiff_t B, ptrdiff_t H, ptrdiff_t j0, ptrdiff_t nh)
{
    const ptrdiff_t G = 4 * H;
    const T half = (T)0.5, one = (T)1, zero = (T)0;
    for (ptrdiff_t b = 0; b < B; b++) {
        const T *pb = p + b * ldp;
        T *restrict ab = (T *)a_ + b * G + j0;
        const T *restrict xb = (const T *)xg_ + b * G + j0;
        /* sigmoid on i, f, o as 0.5 tanh(x / 2) + 0.5 (scale 0.5, shift 0.5); tanh on g
           (scale 1, shift 0): the impl's a = tanh(a * scale) * scale + shift */
        for (int k = 0; k < 4; k += 1 + (k == 1)) /* k = 0, 1, 3 */
            for (ptrdiff_t j = 0; j < nh; j++)
                ab[k * H + j] = TANH((pb[k * pk + j] + xb[k * H + j]) * half) * half + half;
        for (ptrdiff_t j = 0; j < nh; j++)
            ab[2 * H + j] = TANH((pb[2 * pk + j] + xb[2 * H + j]) * one) * one + zero;
        const T *restrict cb = (const T *)c_ + b * H + j0;
        T *restrict cnb = (T *)cn_ + b * H + j0;
        T *restrict hnb = (T *)hn_ + b * H + j0;
        for (ptrdiff_t j = 0; j < nh; j++)
            cnb[j] = ab[H + j] * cb[j] + ab[j] * ab[2 * H + j];
        for (ptrdiff_t j = 0; j < nh; j++) /* a loop of its own, or gcc calls tanh scalar */
            hnb[j] = TANH(cnb[j]) * ab[3 * H + j];
    }
}

/* one forward step: a (B, 4H) holds h_{t-1} W^T; adds x_t, activates the gates in place,
   writes c_t and h_t */
void NAME_lstm_step(void *a_, const void *xg_, const void *c_, void *cn_, void *hn_,
                    ptrdiff_t B, ptrdiff_t H)
{
    NAME_lstm_gates((const T *)a_, 4 * H, H, a_, xg_, c_, cn_, hn_, B, H, 0, H);
}

/* the backward loop over rows for hidden units [j0, j0 + nh) (gate k of unit j at k H + j0
   + j); GH, GC, GA: whether the cotangents gh, gc, ga are there */
#define NAME_BWD_LOOP(GH, GC, GA)                                                  \\
    for (ptrdiff_t b = 0; b < B; b++) {                                            \\
        const T *restrict ab = a + b * G + j0;                                     \\
        T *restrict db = d + b * G + j0;                                           \\
        /* rows of this batch item (pointers per row, or gcc does not vectorise) */ \\
        const T *restrict csb = cs + b * H + j0, *restrict cpb = cp + b * H + j0; \\
        const T *restrict dhb = dh + b * H + j0;                                   \\
        const T *restrict ghb = GH ? gh + b * H + j0 : dhb;                        \\
        const T *restrict gcb = GC ? gc + b * H + j0 : dhb;                        \\
        T *restrict dcb = dc + b * H + j0;                                         \\
        for (ptrdiff_t j = 0; j < nh; j++) /* tanh(c_t) first, in the d o slot */   \\
            db[3 * H + j] = TANH(csb[j]);                                          \\
        _Pragma("omp simd") /* the four blocks of db are apart: no dependence */  \\
        for (ptrdiff_t j = 0; j < nh; j++) {                                       \\
            const T dhv = GH ? dhb[j] + ghb[j] : dhb[j];                           \\
            const T tc = db[3 * H + j];                                            \\
            db[3 * H + j] = dhv * tc;                                              \\
            const T t2 = ((one - tc * tc) * ab[3 * H + j]) * dhv;                  \\
            const T dcv = GC ? (dcb[j] + t2) + gcb[j] : dcb[j] + t2;               \\
            db[j] = dcv * ab[2 * H + j];                                           \\
            db[H + j] = dcv * cpb[j];                                              \\
            db[2 * H + j] = dcv * ab[j];                                           \\
            dcb[j] = dcv * ab[H + j];                                              \\
        }                                                                          \\
        const T *restrict gab = GA ? ga + b * G + j0 : ab;                         \\
        for (int k = 0; k < 4; k += 1 + (k == 1)) /* k = 0, 1, 3: the sigmoids */  \\
            for (ptrdiff_t j = 0; j < nh; j++) {                                   \\
                const T v = GA ? db[k * H + j] + gab[k * H + j] : db[k * H + j];   \\
                db[k * H + j] = v * ((ab[k * H + j] + zero) * (one - ab[k * H + j])); \\
            }                                                                      \\
        for (ptrdiff_t j = 0; j < nh; j++) {                                       \\
            const T v = GA ? db[2 * H + j] + gab[2 * H + j] : db[2 * H + j];       \\
            db[2 * H + j] = v * ((ab[2 * H + j] + one) * (one - ab[2 * H + j]));   \\
        }                                                                          \\
    }

/* one backward step (the raw kernel's loop body up to its product d W) for hidden units
   [j0, j0 + nh): a the gates of step t, cs its cell state, cp the previous one, gh/gc/ga the
   cotangents of step t (NULL: none), dh (B, H) the incoming d h (read), dc (B, H) updated in
   place, d (B, 4H) written, in those units' columns */
static void NAME_lstm_back_units(const void *a_, const void *cs_, const void *cp_,
                                 const void *gh_, const void *gc_, const void *ga_,
                                 const void *dh_, void *dc_, void *d_, ptrdiff_t B,
                                 ptrdiff_t H, ptrdiff_t j0, ptrdiff_t nh)
{
    const T *restrict a = (const T *)a_;
    const T *restrict cs = (const T *)cs_;
    const T *restrict cp = (const T *)cp_;
    const T *restrict gh = (const T *)gh_;
    const T *restrict gc = (const T *)gc_;
    const T *restrict ga = (const T *)ga_;
    const T *restrict dh = (const T *)dh_;
    T *restrict dc = (T *)dc_;
    T *restrict d = (T *)d_;
    const ptrdiff_t G = 4 * H;
    const T one = (T)1, zero = (T)0;
    const int which = (gh != 0) * 4 + (gc != 0) * 2 + (ga != 0);
    switch (which) {
    case 0: NAME_BWD_LOOP(0, 0, 0) break;
    case 1: NAME_BWD_LOOP(0, 0, 1) break;
    case 2: NAME_BWD_LOOP(0, 1, 0) break;
    case 3: NAME_BWD_LOOP(0, 1, 1) break;
    case 4: NAME_BWD_LOOP(1, 0, 0) break;
    case 5: NAME_BWD_LOOP(1, 0, 1) break;
    case 6: NAME_BWD_LOOP(1, 1, 0) break;
    default: NAME_BWD_LOOP(1, 1, 1) break;
    }
}

/* one backward step for all hidden units (NAME_lstm_back_units) */
void NAME_lstm_back_step(const void *a_, const void *cs_, const void *cp_, const void *gh_,
                         const void *gc_, const void *ga_, const void *dh_, void *dc_,
                         void *d_, ptrdiff_t B, ptrdiff_t H)
{
    NAME_lstm_back_units(a_, cs_, cp_, gh_, gc_, ga_, dh_, dc_, d_, B, H, 0, H);
}
"""

_SCAN_C = """
typedef void (*NAME_rnn_gemm_t)(int, int, int, long long, long long, long long, T, const T *,
                            long long, const T *, long long, T, T *, long long);

/* C (M x N, row-major) = A (M x K) B (K x N) in calls of at most rb rows each: products of few
   rows take OpenBLAS's small-matrix kernels (no packing of B) where it has them, faster than
   one packed call (rb: :func:`_rows_per_call`) */
static void NAME_gemm_rows(NAME_rnn_gemm_t gemm, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                           const T *A, ptrdiff_t lda, const T *Bm, ptrdiff_t ldb, T *C,
                           ptrdiff_t ldc, ptrdiff_t rb)
{
    for (ptrdiff_t i = 0; i < M; i += rb) {
        const ptrdiff_t m = M - i < rb ? M - i : rb;
        gemm(101, 111, 111, m, N, K, (T)1, A + i * lda, lda, Bm, ldb, (T)0, C + i * ldc, ldc);
    }
}

/* the rows [b0, b0 + nb) of a (B, W) block starting at p */
#define NAME_ROWS(p, W) ((p) + b0 * (W))
/* inside a scan's parallel region: this thread's band of rows, b0 and nb (the first thread
   writes the thread count to used) */
#define NAME_BAND                                                                  \
    const int nt_ = omp_get_num_threads(), id_ = omp_get_thread_num();             \
    const ptrdiff_t b0 = B * id_ / nt_, nb = B * (id_ + 1) / nt_ - b0;              \
    if (id_ == 0) used = nt_;

/* the LSTM forward scans' arguments, typed */
#define NAME_LSTM_FWD_ARGS                                                         \
    const NAME_rnn_gemm_t gemm = (NAME_rnn_gemm_t)gemm_;                           \
    const T *xg = (const T *)xg_, *wt = (const T *)wt_;                            \
    const T *h0 = (const T *)h0_, *c0 = (const T *)c0_;                            \
    T *hs = (T *)hs_, *cs = (T *)cs_, *gates = (T *)gates_;                        \
    const ptrdiff_t G = 4 * H;                                                     \
    int used = 1;

/* the whole forward scan: per step t, gates[t] = h_{t-1} wt + the gates (NAME_lstm_step).
   Row b's h_t and c_t depend on row b alone, so with nthreads > 1 each thread takes a band of
   rows for the whole sequence (its rows' product, then its rows' gates), with no barrier
   between steps. Returns the number of threads that ran it. */
int NAME_lstm_scan(void *gemm_, const void *xg_, const void *wt_, const void *h0_,
                   const void *c0_, void *hs_, void *cs_, void *gates_, ptrdiff_t L,
                   ptrdiff_t B, ptrdiff_t H, int reverse, int nthreads, int rb)
{
    NAME_LSTM_FWD_ARGS
    #pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        NAME_BAND
        for (ptrdiff_t s = 0; s < L && nb > 0; s++) {
            const ptrdiff_t t = reverse ? L - 1 - s : s, p = reverse ? t + 1 : t - 1;
            const T *h = s == 0 ? NAME_ROWS(h0, H) : NAME_ROWS(hs + p * B * H, H);
            const T *c = s == 0 ? NAME_ROWS(c0, H) : NAME_ROWS(cs + p * B * H, H);
            T *a = NAME_ROWS(gates + t * B * G, G);
            NAME_gemm_rows(gemm, nb, G, H, h, H, wt, G, a, G, rb);
            NAME_lstm_step(a, NAME_ROWS(xg + t * B * G, G), c, NAME_ROWS(cs + t * B * H, H),
                           NAME_ROWS(hs + t * B * H, H), nb, H);
        }
    }
    return used;
}

/* the whole backward scan (the raw kernel's loop): per step, NAME_lstm_back_step, then
   dh = d w; split over bands of rows as the forward scan. Returns the threads used. */
int NAME_lstm_back_scan(void *gemm_, const void *a_, const void *cs_, const void *c0_,
                        const void *gh_, const void *gc_, const void *ga_, const void *w_,
                        void *dh_, void *dc_, void *d_, ptrdiff_t L, ptrdiff_t B, ptrdiff_t H,
                        int reverse, int nthreads, int rb)
{
    const NAME_rnn_gemm_t gemm = (NAME_rnn_gemm_t)gemm_;
    const T *a = (const T *)a_, *cs = (const T *)cs_, *c0 = (const T *)c0_;
    const T *gh = (const T *)gh_, *gc = (const T *)gc_, *ga = (const T *)ga_;
    const T *w = (const T *)w_;
    T *dh = (T *)dh_, *dc = (T *)dc_, *d = (T *)d_;
    const ptrdiff_t G = 4 * H;
    int used = 1;
    #pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        NAME_BAND
        for (ptrdiff_t s = L - 1; s >= 0 && nb > 0; s--) {
            const ptrdiff_t t = reverse ? L - 1 - s : s, p = reverse ? t + 1 : t - 1;
            const ptrdiff_t o1 = t * B * H, o4 = t * B * G;
            const T *c = s == 0 ? NAME_ROWS(c0, H) : NAME_ROWS(cs + p * B * H, H);
            T *dt = NAME_ROWS(d + o4, G);
            NAME_lstm_back_step(NAME_ROWS(a + o4, G), NAME_ROWS(cs + o1, H), c,
                                gh ? NAME_ROWS(gh + o1, H) : 0, gc ? NAME_ROWS(gc + o1, H) : 0,
                                ga ? NAME_ROWS(ga + o4, G) : 0, NAME_ROWS(dh, H),
                                NAME_ROWS(dc, H), dt, nb, H);
            NAME_gemm_rows(gemm, nb, H, G, dt, G, w, H, NAME_ROWS(dh, H), H, rb);
        }
    }
    return used;
}

/* inside a units-split scan's parallel region: this thread's block of hidden units, j0 and
   nh (the first thread writes the thread count to used) */
#define NAME_UNITS                                                                 \
    const int nt_ = omp_get_num_threads(), id_ = omp_get_thread_num();             \
    const ptrdiff_t j0 = H * id_ / nt_, nh = H * (id_ + 1) / nt_ - j0;              \
    if (id_ == 0) used = nt_;

/* the forward scan split over hidden units: thread k owns the units [j0, j0 + nh), their
   four gate columns and their columns of h_t and c_t. Its columns of wt (H, 4H) are copied
   once into wp's columns [4 j0, 4 j0 + 4 nh) (gate-major: i, f, g, o, nh each), so that per
   step one product h_{t-1} (B, H) @ wp[:, its columns] into its block of p (B x 4 nh at
   p + 4 B j0) gives its pre-activations; its gates, c_t and h_t follow; a barrier, and the
   next step's products read the whole h_t. W is read once per step over all threads (a
   split over batch rows reads all of it in each). wp (H, 4H) and p (B, 4H) are scratch. */
int NAME_lstm_scan_units(void *gemm_, const void *xg_, const void *wt_, const void *h0_,
                         const void *c0_, void *hs_, void *cs_, void *gates_, void *wp_,
                         void *p_, ptrdiff_t L, ptrdiff_t B, ptrdiff_t H, int reverse,
                         int nthreads, int rb)
{
    NAME_LSTM_FWD_ARGS
    #pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        NAME_UNITS
        T *wq = (T *)wp_ + 4 * j0, *pq = (T *)p_ + 4 * B * j0;
        for (ptrdiff_t r = 0; r < H; r++)
            for (int k = 0; k < 4; k++)
                for (ptrdiff_t j = 0; j < nh; j++)
                    wq[r * G + k * nh + j] = wt[r * G + k * H + j0 + j];
        for (ptrdiff_t s = 0; s < L; s++) {
            const ptrdiff_t t = reverse ? L - 1 - s : s, p = reverse ? t + 1 : t - 1;
            const T *h = s == 0 ? h0 : hs + p * B * H;
            const T *c = s == 0 ? c0 : cs + p * B * H;
            if (nh > 0) {
                NAME_gemm_rows(gemm, B, 4 * nh, H, h, H, wq, G, pq, 4 * nh, rb);
                NAME_lstm_gates(pq, 4 * nh, nh, gates + t * B * G, xg + t * B * G, c,
                                cs + t * B * H, hs + t * B * H, B, H, j0, nh);
            }
            #pragma omp barrier
        }
    }
    return used;
}

/* the backward scan split over hidden units as the forward: per step, thread k's units'
   backward step (their columns of d, their dc), a barrier (the product needs all of d),
   then its columns of dh = d (B, 4H) @ w[:, j0:j0 + nh]; the next step's units read only
   their own dh and dc columns, so one barrier per step. */
int NAME_lstm_back_scan_units(void *gemm_, const void *a_, const void *cs_, const void *c0_,
                              const void *gh_, const void *gc_, const void *ga_,
                              const void *w_, void *dh_, void *dc_, void *d_, ptrdiff_t L,
                              ptrdiff_t B, ptrdiff_t H, int reverse, int nthreads, int rb)
{
    const NAME_rnn_gemm_t gemm = (NAME_rnn_gemm_t)gemm_;
    const T *a = (const T *)a_, *cs = (const T *)cs_, *c0 = (const T *)c0_;
    const T *gh = (const T *)gh_, *gc = (const T *)gc_, *ga = (const T *)ga_;
    const T *w = (const T *)w_;
    T *dh = (T *)dh_, *d = (T *)d_;
    const ptrdiff_t G = 4 * H;
    int used = 1;
    #pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        NAME_UNITS
        for (ptrdiff_t s = L - 1; s >= 0; s--) {
            const ptrdiff_t t = reverse ? L - 1 - s : s, p = reverse ? t + 1 : t - 1;
            const ptrdiff_t o1 = t * B * H, o4 = t * B * G;
            const T *c = s == 0 ? c0 : cs + p * B * H;
            if (nh > 0)
                NAME_lstm_back_units(a + o4, cs + o1, c, gh ? gh + o1 : 0, gc ? gc + o1 : 0,
                                     ga ? ga + o4 : 0, dh, dc_, d + o4, B, H, j0, nh);
            #pragma omp barrier
            if (nh > 0)
                NAME_gemm_rows(gemm, B, nh, G, d + o4, G, w + j0, H, dh + j0, H, rb);
        }
    }
    return used;
}
"""

_GRU_C = """
/* the GRU forward scan, the impl's operations per row in its order: hg = h W^T + b; on r, z:
   + x, then 0.5 tanh(v * 0.5) + 0.5; n = tanh(r hn + x_n); h' = (h - n) z + n. Bands of rows
   over threads as the LSTM's scan; returns the threads used. */
int NAME_gru_scan(void *gemm_, const void *xg_, const void *wt_, const void *b_,
                  const void *h0_, void *hs_, void *hgs_, void *ns_, ptrdiff_t L, ptrdiff_t B,
                  ptrdiff_t H, int reverse, int nthreads, int rb)
{
    const NAME_rnn_gemm_t gemm = (NAME_rnn_gemm_t)gemm_;
    const T *xg = (const T *)xg_, *wt = (const T *)wt_, *bias = (const T *)b_;
    const T *h0 = (const T *)h0_;
    T *hs = (T *)hs_, *hgs = (T *)hgs_, *ns = (T *)ns_;
    const ptrdiff_t G = 3 * H;
    const T half = (T)0.5;
    int used = 1;
    #pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        NAME_BAND
        for (ptrdiff_t s = 0; s < L && nb > 0; s++) {
            const ptrdiff_t t = reverse ? L - 1 - s : s, p = reverse ? t + 1 : t - 1;
            const T *h = s == 0 ? NAME_ROWS(h0, H) : NAME_ROWS(hs + p * B * H, H);
            T *a = NAME_ROWS(hgs + t * B * G, G);
            NAME_gemm_rows(gemm, nb, G, H, h, H, wt, G, a, G, rb);
            for (ptrdiff_t r = 0; r < nb; r++) {
                T *restrict ab = a + r * G;
                const T *restrict xb = NAME_ROWS(xg + t * B * G, G) + r * G;
                const T *restrict hp = h + r * H;
                T *restrict nr = NAME_ROWS(ns + t * B * H, H) + r * H;
                T *restrict hn = NAME_ROWS(hs + t * B * H, H) + r * H;
                for (ptrdiff_t j = 0; j < 2 * H; j++)
                    ab[j] = TANH(((ab[j] + bias[j]) + xb[j]) * half) * half + half;
                for (ptrdiff_t j = 2 * H; j < G; j++)
                    ab[j] = ab[j] + bias[j];
                for (ptrdiff_t j = 0; j < H; j++)
                    nr[j] = ab[j] * ab[2 * H + j] + xb[2 * H + j];
                for (ptrdiff_t j = 0; j < H; j++) /* tanh in a loop of its own */
                    nr[j] = TANH(nr[j]);
                for (ptrdiff_t j = 0; j < H; j++)
                    hn[j] = (hp[j] - nr[j]) * ab[H + j] + nr[j];
            }
        }
    }
    return used;
}

#define NAME_GRU_BWD_ROWS(GH, GHG, GN)                                              \
    for (ptrdiff_t r = 0; r < nb; r++) {                                           \
        const T *restrict ab = a + r * G, *restrict nr = n + r * H;                \
        const T *restrict hp = h + r * H;                                          \
        const T *restrict ghr = GH ? gh + r * H : nr, *restrict gnr = GN ? gn + r * H : nr; \
        const T *restrict ghgr = GHG ? ghg + r * G : ab;                           \
        T *restrict dr = d + r * G, *restrict dxr = dx + r * G, *restrict dhr = dh + r * H; \
        for (ptrdiff_t j = 0; j < H; j++) {                                        \
            const T dhv = GH ? dhr[j] + ghr[j] : dhr[j];                           \
            dhr[j] = dhv;                                                          \
            const T nv = nr[j];                                                    \
            T dn = (one - ab[H + j]) * dhv;                                        \
            if (GN) dn = dn + gnr[j];                                              \
            dn = dn * (one - nv * nv);                                             \
            dr[j] = dn * ab[2 * H + j];                                            \
            dr[H + j] = (hp[j] - nv) * dhv;                                        \
            dr[2 * H + j] = dn * ab[j];                                            \
            dxr[2 * H + j] = dn;                                                   \
        }                                                                          \
        if (GHG)                                                                   \
            for (ptrdiff_t j = 0; j < G; j++) dr[j] = dr[j] + ghgr[j];             \
        for (ptrdiff_t j = 0; j < 2 * H; j++) {                                    \
            dr[j] = dr[j] * ((one - ab[j]) * ab[j]);                               \
            dxr[j] = dr[j];                                                        \
        }                                                                          \
    }

/* the GRU's raw backward loop: per step (d of the pre-activations: dx, dhg), then
   dh = dh z + d W; bands of rows over threads. dhn (B, H) is scratch. */
int NAME_gru_back_scan(void *gemm_, const void *hs_, const void *hgs_, const void *ns_,
                       const void *h0_, const void *gh_, const void *ghg_, const void *gn_,
                       const void *w_, void *dx_, void *dhg_, void *dh_, void *dhn_,
                       ptrdiff_t L, ptrdiff_t B, ptrdiff_t H, int reverse, int nthreads, int rb)
{
    const NAME_rnn_gemm_t gemm = (NAME_rnn_gemm_t)gemm_;
    const T *hs = (const T *)hs_, *hgs = (const T *)hgs_, *ns = (const T *)ns_;
    const T *h0 = (const T *)h0_, *w = (const T *)w_;
    const T *g_h = (const T *)gh_, *g_hg = (const T *)ghg_, *g_n = (const T *)gn_;
    T *dxs = (T *)dx_, *dhgs = (T *)dhg_, *dhall = (T *)dh_, *dhnall = (T *)dhn_;
    const ptrdiff_t G = 3 * H;
    const T one = (T)1;
    const int which = (g_h != 0) * 4 + (g_hg != 0) * 2 + (g_n != 0);
    int used = 1;
    #pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        NAME_BAND
        T *restrict dh = NAME_ROWS(dhall, H), *restrict dhn = NAME_ROWS(dhnall, H);
        for (ptrdiff_t s = L - 1; s >= 0 && nb > 0; s--) {
            const ptrdiff_t t = reverse ? L - 1 - s : s, p = reverse ? t + 1 : t - 1;
            const ptrdiff_t o1 = t * B * H, o3 = t * B * G;
            const T *a = NAME_ROWS(hgs + o3, G), *n = NAME_ROWS(ns + o1, H);
            const T *h = s == 0 ? NAME_ROWS(h0, H) : NAME_ROWS(hs + p * B * H, H);
            const T *gh = g_h ? NAME_ROWS(g_h + o1, H) : 0;
            const T *ghg = g_hg ? NAME_ROWS(g_hg + o3, G) : 0;
            const T *gn = g_n ? NAME_ROWS(g_n + o1, H) : 0;
            T *d = NAME_ROWS(dhgs + o3, G), *dx = NAME_ROWS(dxs + o3, G);
            switch (which) {
            case 0: NAME_GRU_BWD_ROWS(0, 0, 0) break;
            case 1: NAME_GRU_BWD_ROWS(0, 0, 1) break;
            case 2: NAME_GRU_BWD_ROWS(0, 1, 0) break;
            case 3: NAME_GRU_BWD_ROWS(0, 1, 1) break;
            case 4: NAME_GRU_BWD_ROWS(1, 0, 0) break;
            case 5: NAME_GRU_BWD_ROWS(1, 0, 1) break;
            case 6: NAME_GRU_BWD_ROWS(1, 1, 0) break;
            default: NAME_GRU_BWD_ROWS(1, 1, 1) break;
            }
            NAME_gemm_rows(gemm, nb, H, G, d, G, w, H, dhn, H, rb);
            for (ptrdiff_t r = 0; r < nb; r++)
                for (ptrdiff_t j = 0; j < H; j++)
                    dh[r * H + j] = dh[r * H + j] * a[r * G + H + j] + dhn[r * H + j];
        }
    }
    return used;
}
"""

_DECL = """
void NAME_lstm_step(void *, const void *, const void *, void *, void *, ptrdiff_t, ptrdiff_t);
void NAME_lstm_back_step(const void *, const void *, const void *, const void *, const void *,
                         const void *, const void *, void *, void *, ptrdiff_t, ptrdiff_t);
int NAME_lstm_scan(void *, const void *, const void *, const void *, const void *, void *,
                   void *, void *, ptrdiff_t, ptrdiff_t, ptrdiff_t, int, int, int);
int NAME_lstm_back_scan(void *, const void *, const void *, const void *, const void *,
                        const void *, const void *, const void *, void *, void *, void *,
                        ptrdiff_t, ptrdiff_t, ptrdiff_t, int, int, int);
int NAME_lstm_scan_units(void *, const void *, const void *, const void *, const void *,
                         void *, void *, void *, void *, void *, ptrdiff_t, ptrdiff_t,
                         ptrdiff_t, int, int, int);
int NAME_lstm_back_scan_units(void *, const void *, const void *, const void *, const void *,
                              const void *, const void *, const void *, void *, void *, void *,
                              ptrdiff_t, ptrdiff_t, ptrdiff_t, int, int, int);
int NAME_gru_scan(void *, const void *, const void *, const void *, const void *, void *,
                  void *, void *, ptrdiff_t, ptrdiff_t, ptrdiff_t, int, int, int);
int NAME_gru_back_scan(void *, const void *, const void *, const void *, const void *,
                       const void *, const void *, const void *, const void *, void *, void *,
                       void *, void *, ptrdiff_t, ptrdiff_t, ptrdiff_t, int, int, int);
"""


# multiply-adds of a whole scan's products (L B G H, G the gates' width: 4H, 3H) from which
# its batch rows are split over threads: the threads wake once per scan, not per step
_PARALLEL_MACS = 1 << 22

# threads the last C scan of each kind ran on (the tests read it)
LAST_THREADS = {"lstm_scan": 0, "lstm_backward": 0, "gru_scan": 0, "gru_backward": 0}
# how the LSTM's scans split over threads: "rows" (bands of batch rows, no barrier) or "units"
# (blocks of hidden units, a barrier per step); None: CHAINRULE_JIT_LSTM_SPLIT, else "rows".
# The GRU's split rows. SPLITS: what the last scan of each kind did ("units", "rows" or
# "none": one thread; the tests read it)
SPLIT = [None]
SPLITS = dict.fromkeys(LAST_THREADS, "none")
# rows per product call the last scan of each kind used (the tests read it)
LAST_ROWS = dict.fromkeys(LAST_THREADS, 0)
# threads a scan over the threshold uses: 0 is OpenMP's count (OMP_NUM_THREADS, else the
# cores); tests and benchmarks set another
THREADS = [0]


def lstm_split() -> str:
    """How the LSTM's scans split over threads, when they do: :data:`SPLIT` if set, else the
    environment's ``CHAINRULE_JIT_LSTM_SPLIT`` (``rows``, the default, or ``units``).

    Example:
        >>> lstm_split() in ("rows", "units")
        True
    """
    if SPLIT[0] is not None:
        return SPLIT[0]
    how = os.environ.get("CHAINRULE_JIT_LSTM_SPLIT", "rows").strip().lower() or "rows"
    if how not in ("rows", "units"):
        raise ValueError(f"CHAINRULE_JIT_LSTM_SPLIT={how!r}: expected 'rows' (split the batch "
                         "rows over threads) or 'units' (split the hidden units)")
    return how


def _scan_threads(lib, L, B, H, G, most=None) -> int:
    """Threads for a scan (gate width ``G``): 1 below :data:`_PARALLEL_MACS`, without a way
    to keep the BLAS single-threaded inside the region, or while OpenBLAS runs on several
    threads (unless :data:`THREADS` asks for a count), else OpenMP's count, at most ``most``
    (the units or rows to split; default the batch rows). On a quiet machine a scan on one
    thread whose step products OpenBLAS threads beat the rows split (2.5 against 3.9 ms, the
    benchmark's forward scan at 2 threads): the split holds OpenBLAS at one thread, whose
    threads still spin from the step's other products;
    under :mod:`~chainrule.jit.cblas`'s one-thread setting the split is the faster one."""
    calls = blas_threads()
    most = B if most is None else most
    if most < 2 or L * B * G * H < _PARALLEL_MACS or calls is None or (
            not THREADS[0] and calls[0]() > 1):
        return 1
    return max(1, min(most, THREADS[0] or lib.crnn_max_threads()))


# rows per product call in the scans' steps: 0 picks by trial (:func:`_rows_per_call`); tests
# and benchmarks set a count
ROWS = [0]
# {(dtype, M, N, K): rows per call}: the trials' picks
_PICKED: dict = {}
# the row counts tried against one call, and how much faster one must be to be kept
_TRY_ROWS, _ROWS_MARGIN = (8, 16), 0.95


def _rows_per_call(dt, M, N, K, whole: bool) -> int:
    """Rows per ``cblas_?gemm`` call for a scan step's product (M x K) @ (K x N) on one
    OpenBLAS thread: ``M`` (one call) when ``whole`` (OpenBLAS threads the step's product), else
    :data:`ROWS` if set, else a trial's pick, once per (dtype, M, N, K) and process. OpenBLAS's
    small-matrix kernels (SkylakeX: up to about 10^6 multiply-adds, no packing of B) made the
    benchmark's (32, 128) @ (128, 512) 15-20% faster in four calls of 8 rows than in one packed
    call (docs/jit.md); other kernels or sizes may not have them, so the trial times one call
    against calls of :data:`_TRY_ROWS` rows (NumPy's products on row slices: their per-call cost
    counts against the split), taking turns, and keeps the fastest if it is faster by 5%."""
    if whole or M <= min(_TRY_ROWS):
        return M
    if ROWS[0]:
        return ROWS[0]
    key = (dt, M, N, K)
    if key not in _PICKED:
        rng = np.random.default_rng(0)
        a, b = rng.random((M, K)).astype(dt), rng.random((K, N)).astype(dt)
        out = np.empty((M, N), dt)
        counts = (M,) + tuple(r for r in _TRY_ROWS if r < M)
        times = {r: [] for r in counts}
        with one_blas_thread():
            for _ in range(9):
                for r in counts:
                    t = time.perf_counter()
                    for _ in range(5):
                        for i in range(0, M, r):
                            np.dot(a[i:i + r], b, out=out[i:i + r])
                    times[r].append(time.perf_counter() - t)
        med = {r: statistics.median(v) for r, v in times.items()}
        best = min(counts[1:], key=med.__getitem__, default=M)
        _PICKED[key] = best if med[best] < _ROWS_MARGIN * med[M] else M
    return _PICKED[key]


def _in_region(call, nthreads):
    """``call()`` with OpenBLAS on one thread while ``nthreads`` > 1 threads call it: a
    product big enough for it to thread would otherwise ask its own threads from each of
    ours (the benchmark's forward scan then took 1.8 s instead of 24 ms). Scans running at
    once in several Python threads count themselves: the last one out sets the count back."""
    if nthreads <= 1:
        return call()
    with one_blas_thread():
        return call()


def _run_scan(lib, key, name, dt, args, L, B, H, G, reverse, units=None) -> None:
    """The C scan ``name`` of dtype ``dt`` on ``args`` (then L, B, H, reverse and the thread
    count), on :func:`_scan_threads` threads inside :func:`_in_region`; the threads it ran on
    go to ``LAST_THREADS[key]``. With ``units`` (a function of the thread count giving the
    extra arguments, or None for none) and :func:`lstm_split` ``"units"``, a split scan runs
    ``name + "_units"``, the hidden units split over the threads, instead of the batch rows."""
    by_units = units is not None and lstm_split() == "units"
    nt = _scan_threads(lib, L, B, H, G, H if by_units else B)
    if by_units and nt > 1:
        fn, args = getattr(lib, f"{C_PREFIX[dt]}_{name}_units"), args + units(nt)
        SPLITS[key] = "units"
    else:
        fn = getattr(lib, f"{C_PREFIX[dt]}_{name}")
        SPLITS[key] = "rows" if nt > 1 else "none"
    calls = blas_threads()
    whole = nt == 1 and calls is not None and calls[0]() > 1  # OpenBLAS threads the products
    # the step's product: (B, H) @ (H, G) forward, (B, G) @ (G, H) backward
    n, k = (H, G) if key.endswith("backward") else (G, H)
    rb = _rows_per_call(dt, B, n, k, whole)
    LAST_ROWS[key] = rb
    LAST_THREADS[key] = _in_region(lambda: fn(*args, L, B, H, int(reverse), nt, rb), nt)


def source() -> tuple[str, str]:
    """(declarations, C source) of the LSTM step loops for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_lstm_step(" in src and "f64_lstm_back_step(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C + _SCAN_C + _GRU_C, "TANH")
    return (decl + "int crnn_max_threads(void);\n",
            "#include <omp.h>\nint crnn_max_threads(void) { return omp_get_max_threads(); }\n"
            + src)


def _covered(dtype, *arrays) -> bool:
    return dtype in C_PREFIX and all(a is None or (type(a) is np.ndarray and a.dtype == dtype)
                               for a in arrays)


def wrappers(lib, ffi) -> dict:
    """``{primitive or op name: function}``: the ``lstm_scan`` impl and the raw backward
    kernel with their NumPy signatures, running the C steps when they can, else the NumPy
    version (``lib``, ``ffi``: the cffi module compiled from :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> scan = wrappers(mod.lib, mod.ffi)["lstm_scan"]  # doctest: +SKIP
        >>> hs, cs, gates = scan(np, np.zeros((3, 2, 8)), np.zeros((8, 2)), np.zeros((2, 2)),
        ...                      np.zeros((2, 2)), reverse=False)  # doctest: +SKIP
        >>> float(gates[0, 0, 0])  # doctest: +SKIP
        0.5
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impl as registered (lowp wrapper)

    scan_impl = REGISTRY["lstm_scan"].impl
    gemms = {dt: ffi.cast("void *", p) for dt, p in gemm_pointers().items()}
    fb, null = ffi.from_buffer, ffi.NULL
    c = np.ascontiguousarray
    ctype = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *"}

    def base(a):
        """A typed pointer to C-contiguous ``a``: ``base(a) + k`` is element k, cheaper per
        step than a new ``from_buffer`` of each step's block. The pointer does not keep
        ``a`` alive: the caller holds ``a`` while it is used."""
        return ffi.cast(ctype[a.dtype], fb(a, require_writable=a.flags.writeable))

    def lstm_scan(xp, xg, w, h0, c0, reverse):
        dt = getattr(xg, "dtype", None)
        if xp is not np or not _covered(dt, xg, w, h0, c0):
            return scan_impl(xp, xg, w, h0, c0, reverse=reverse)
        step = getattr(lib, f"{C_PREFIX[dt]}_lstm_step")
        L, B, G = xg.shape
        H = G // 4
        hs = np.empty((L, B, H), dt)
        cs = np.empty((L, B, H), dt)
        gates = np.empty((L, B, G), dt)
        xg, w_t, h, c0 = c(xg), c(w.T), c(h0), c(c0)
        if dt in gemms and L * B * H > 0:  # the whole scan in C (cblas wants lda >= 1)
            scratch = []  # the units split's (H, 4H) weight copy and (B, 4H) products

            def units(nt):
                scratch[:] = np.empty((H, G), dt), np.empty((B, G), dt)
                return tuple(fb(a, require_writable=True) for a in scratch)

            _run_scan(lib, "lstm_scan", "lstm_scan", dt, (
                gemms[dt], fb(xg), fb(w_t), fb(h), fb(c0), fb(hs, require_writable=True),
                fb(cs, require_writable=True), fb(gates, require_writable=True)),
                L, B, H, G, reverse, units)
            return hs, cs, gates
        c_prev = base(c0)
        pg, px, pc, ph = base(gates), base(xg), base(cs), base(hs)
        for t in _steps(L, reverse):
            np.dot(h, w_t, out=gates[t])
            step(pg + t * B * G, px + t * B * G, c_prev, pc + t * B * H, ph + t * B * H, B, H)
            h, c_prev = hs[t], pc + t * B * H
        return hs, cs, gates

    def lstm_backward(gs, xg, w, h0, c0, out, reverse):
        hs, cs, gates = out
        dt = getattr(gates, "dtype", None)
        if not _covered(dt, xg, w, h0, c0, hs, cs, gates, *gs):
            return _lstm_backward_raw(gs, xg, w, h0, c0, out, reverse)
        step = getattr(lib, f"{C_PREFIX[dt]}_lstm_back_step")
        L, B, G = xg.shape
        H = G // 4
        held = [None if g is None else c(g) for g in gs]  # alive while their pointers are used
        g_h, g_c, g_a = (None if g is None else base(g) for g in held)
        gates, cs, c0 = c(gates), c(cs), c(c0)
        dxg = np.empty((L, B, G), dt)
        dh = np.zeros((B, H), dt)
        dc = np.zeros((B, H), dt)
        if dt in gemms and L * B * H > 0:  # the whole scan in C (cblas wants lda >= 1)
            wc = c(w)
            _run_scan(lib, "lstm_backward", "lstm_back_scan", dt, (
                gemms[dt], fb(gates), fb(cs), fb(c0),
                *(null if g is None else fb(g) for g in held), fb(wc),
                fb(dh, require_writable=True), fb(dc, require_writable=True),
                fb(dxg, require_writable=True)), L, B, H, G, reverse, lambda nt: ())
            return dxg, dh, dc
        pa, pcs, pc0 = base(gates), base(cs), base(c0)
        pd, pdh, pdc = base(dxg), base(dh), base(dc)
        for t in reversed(_steps(L, reverse)):
            first = t == (L - 1 if reverse else 0)
            c_prev = pc0 if first else pcs + (t + 1 if reverse else t - 1) * B * H
            s1, s4 = t * B * H, t * B * G
            step(pa + s4, pcs + s1, c_prev, null if g_h is None else g_h + s1,
                 null if g_c is None else g_c + s1, null if g_a is None else g_a + s4,
                 pdh, pdc, pd + s4, B, H)
            np.dot(dxg[t], w, out=dh)
        return dxg, dh, dc

    gru_impl = REGISTRY["gru_scan"].impl

    def gru_scan(xp, xg, w, b, h0, reverse):
        dt = getattr(xg, "dtype", None)
        if (xp is not np or dt not in gemms or not _covered(dt, xg, w, b, h0) or b is None
                or b.shape != (xg.shape[-1],)):
            return gru_impl(xp, xg, w, b, h0, reverse=reverse)
        L, B, G = xg.shape
        H = G // 3
        if L * B * H == 0:  # nothing to loop over (and cblas wants leading dimensions >= 1)
            return gru_impl(xp, xg, w, b, h0, reverse=reverse)
        hs = np.empty((L, B, H), dt)
        hgs = np.empty((L, B, G), dt)
        ns = np.empty((L, B, H), dt)
        xg, w_t, b, h0 = c(xg), c(w.T), c(b), c(h0)
        _run_scan(lib, "gru_scan", "gru_scan", dt, (
            gemms[dt], fb(xg), fb(w_t), fb(b), fb(h0), fb(hs, require_writable=True),
            fb(hgs, require_writable=True), fb(ns, require_writable=True)),
            L, B, H, G, reverse)
        return hs, hgs, ns

    def gru_backward(gs, xg, w, b, h0, out, reverse):
        hs, hgs, ns = out
        dt = getattr(hs, "dtype", None)
        L, B, G = xg.shape
        H = G // 3
        if (dt not in gemms or not _covered(dt, xg, w, b, h0, hs, hgs, ns, *gs)
                or L * B * H == 0):
            return _gru_backward_raw(gs, xg, w, b, h0, out, reverse)
        dx = np.empty((L, B, G), dt)
        dhg = np.empty((L, B, G), dt)
        dh = np.zeros((B, H), dt)
        held = [None if g is None else c(g) for g in gs]  # alive while their pointers are used
        hs, hgs, ns, h0, wc = c(hs), c(hgs), c(ns), c(h0), c(w)
        dhn = np.empty((B, H), dt)
        _run_scan(lib, "gru_backward", "gru_back_scan", dt, (
            gemms[dt], fb(hs), fb(hgs), fb(ns), fb(h0),
            *(null if g is None else fb(g) for g in held), fb(wc),
            fb(dx, require_writable=True), fb(dhg, require_writable=True),
            fb(dh, require_writable=True), fb(dhn, require_writable=True)),
            L, B, H, G, reverse)
        return dx, dhg, dh

    lstm_backward.chainrule_fresh = True  # new arrays, as the raw kernel returns
    gru_backward.chainrule_fresh = True
    return {"lstm_scan": lstm_scan, "kernel.lstm_backward": lstm_backward,
            "gru_scan": gru_scan, "kernel.gru_backward": gru_backward}
