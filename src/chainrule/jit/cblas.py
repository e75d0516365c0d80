"""Backend "c": whether a compiled step runs with NumPy's OpenBLAS on its own threads or on one.

Two thread pools share the cores in a compiled step: OpenBLAS's (the matrix products) and
OpenMP's (the C loops: convolutions over images, the recurrent scans over batch rows, the
fused kernels). After a threaded product, OpenBLAS's idle threads spin for a while before they
sleep, and a spinning thread takes a core from an OpenMP thread with work. With OpenBLAS on
one thread for the whole step, its threads stay asleep and the C loops have the cores; the
products then run on one core each. Which is faster depends on the step: the transformer and
MLP steps (large products) run best with OpenBLAS's own threads; LeNet and the LSTM (small
products, C loops over images or batch rows) 15-25% faster with OpenBLAS held at one thread
(measured before the products were split: docs/jit.md, "One pool").

:func:`tuned` wraps a program's ``run``: its first calls take turns in blocks, OpenBLAS's own
count against one thread, leaving out each block's first call and, for one thread, its first
0.3 s (OpenBLAS's threads spin on from the previous block); from then on OpenBLAS keeps its own
count if that was faster by more than 5%, else it is held at one thread: with the products
split over OpenMP's threads (below) the held setting is the one pool, and on a busy host it
degrades gracefully where OpenBLAS's own threads collapse (docs/jit.md, "One pool"). A
pick made during a slow spell of the host would stand for the whole run, so the trial is
made again after ``RECHECK`` calls, then after twice as many, and so on (a trial costs its
blocks in the slower setting: 10 calls of several thousand). ``CHAINRULE_JIT_BLAS=own`` or
``one`` skips the trial.

The results may differ in the last bits between the two settings: OpenBLAS picks a different
kernel split for some shapes on one thread than on two (a (128, 784) x (784, 512) float32
product differs by up to 5e-5 here), so a run whose bits must not depend on timing sets
``CHAINRULE_JIT_BLAS=own`` (the setting eager NumPy runs with).

One pool for the products too: while OpenBLAS is held at one thread and OpenMP has several,
a big 2-d ``matmul`` in a compiled step is split over OpenMP's threads, a block of rows (or
columns) per thread, each one single-thread ``cblas_?gemm`` call (:func:`wrappers`), and so
are ``linear``, ``relu(linear)`` and ``r + linear`` (``cgemm``, from the same
:data:`SPLIT_MACS`). Without it, the one-thread setting left a step's big products (the
LSTM's input projection and weight gradients, the transformer's 18 ``linear``) on one core
while its C loops had both.
"""

from __future__ import annotations

import logging
import os
import statistics
import time

from ..backend import np
from .cconv import blas_threads, gemm_pointers, one_blas_thread
from .numpy_backend import GuardFailed
from .render_c import C_PREFIX, per_float_type

logger = logging.getLogger("chainrule.jit")

# timed calls per trial block, calls left out at a block's start, blocks per setting
BLOCK, SKIP, ROUNDS = 4, 1, 2
# seconds left out at the start of a one-thread block: OpenBLAS's threads spin on after the
# previous block's products (about 0.1 s: its default THREAD_TIMEOUT, 2^28 cycles)
SETTLE = 0.3
# OpenBLAS's own threads are kept only when faster than the held setting by this factor
MARGIN = 0.95
# calls after a pick at which the trial is made again (then twice as many, and so on)
RECHECK = 1000


# ---------------------------------------------------------------- matmul on OpenMP's threads
PRIMS = ("matmul",)

# multiply-adds from which a 2-d product is split over OpenMP's threads while OpenBLAS is
# held at one thread (about 0.2 ms of work on one core)
SPLIT_MACS = 1 << 22
# a block's rows or columns are a multiple of this (whole tiles of OpenBLAS's kernels)
_ALIGN = 16
# products split over the threads (tests read it)
SPLITS = [0]

_C = """
typedef void (*NAME_mmsplit_t)(int, int, int, long long, long long, long long, T, const T *,
                               long long, const T *, long long, T, T *, long long);

/* c (M, N) = op(a) @ op(b), a block of c's rows (by_rows) or columns per OpenMP thread,
   each block one cblas_?gemm call (OpenBLAS on one thread) */
void NAME_matmul_split(void *gemm_, int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                       const void *a_, ptrdiff_t lda, const void *b_, ptrdiff_t ldb, void *c_,
                       int by_rows, int align)
{
    const NAME_mmsplit_t gemm = (NAME_mmsplit_t)gemm_;
    const T *a = (const T *)a_;
    const T *b = (const T *)b_;
    T *c = (T *)c_;
    const ptrdiff_t D = by_rows ? M : N;
    #pragma omp parallel
    {
        const ptrdiff_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const ptrdiff_t tiles = (D + align - 1) / align;
        const ptrdiff_t lo = tiles * id / nt * align, hi_ = tiles * (id + 1) / nt * align;
        const ptrdiff_t hi = hi_ < D ? hi_ : D;
        if (hi > lo) {
            if (by_rows)  /* rows lo..hi of op(a): a's rows (112: a's columns) */
                gemm(101, ta, tb, hi - lo, N, K, (T)1, a + (ta == 111 ? lo * lda : lo), lda,
                     b, ldb, (T)0, c + lo * N, N);
            else  /* columns lo..hi of op(b): b's columns (112: b's rows) */
                gemm(101, ta, tb, M, hi - lo, K, (T)1, a, lda,
                     b + (tb == 111 ? lo : lo * ldb), ldb, (T)0, c + lo, N);
        }
    }
}
"""

_DECL = """
void NAME_matmul_split(void *, int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const void *,
                       ptrdiff_t, const void *, ptrdiff_t, void *, int, int);
"""



def source() -> tuple[str, str]:
    """(declarations, C source) of the split product for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_matmul_split(" in src and "f64_matmul_split(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C)
    return (decl + "int cblas_max_threads(void);\n",
            "#include <omp.h>\nint cblas_max_threads(void) { return omp_get_max_threads(); }\n"
            + src)


def wrappers(lib, ffi) -> dict:
    """``{"matmul": impl}``: a 2-d float32/float64 product of at least :data:`SPLIT_MACS`
    multiply-adds, while NumPy's OpenBLAS runs on one thread (:func:`tuned`'s one-thread
    setting, or the user's) and OpenMP has several, is cut into blocks of rows (or of
    columns, whichever dimension is longer) and each OpenMP thread makes its block with
    one ``cblas_?gemm`` call: the products share the kernels' pool instead of running on
    one core. Any other call is the impl (NumPy's ``matmul``, OpenBLAS's own threads).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> mm = wrappers(mod.lib, mod.ffi)["matmul"]  # doctest: +SKIP
        >>> mm(np, np.ones((2, 3)), np.ones((3, 4)))[0]  # doctest: +SKIP
        array([3., 3., 3., 3.])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impl as registered
    from .cgemm import _operand  # noqa: PLC0415 - (array, transposed?, leading dim)

    impl = REGISTRY["matmul"].impl
    gemms = {dt: ffi.cast("void *", p) for dt, p in gemm_pointers().items()}  # cast once
    splits = {dt: getattr(lib, f"{C_PREFIX[dt]}_matmul_split") for dt in gemms}
    calls = blas_threads()
    fb = ffi.from_buffer

    def matmul(xp, a, b):
        dt = getattr(a, "dtype", None)
        if (xp is np and type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2
                and b.ndim == 2 and dt in gemms and b.dtype == dt
                and a.shape[1] == b.shape[0]):
            (m, k), n = a.shape, b.shape[1]
            if (m * n * k >= SPLIT_MACS and max(m, n) >= 2 * _ALIGN and calls is not None
                    and calls[0]() == 1 and lib.cblas_max_threads() > 1):
                a, ta, lda = _operand(a)
                b, tb, ldb = _operand(b)
                out = np.empty((m, n), dt)
                splits[dt](
                    gemms[dt], 112 if ta else 111, 112 if tb else 111, m, n, k, fb(a), lda,
                    fb(b), ldb, fb(out, require_writable=True), int(m >= n), _ALIGN)
                SPLITS[0] += 1
                return out
        return impl(xp, a, b)

    return {"matmul": matmul}


def _mode() -> str:
    mode = os.environ.get("CHAINRULE_JIT_BLAS", "auto").strip().lower() or "auto"
    if mode not in ("auto", "own", "one"):
        raise ValueError(f"CHAINRULE_JIT_BLAS={mode!r}: expected 'auto', 'own' or 'one'")
    return mode


class Tuned:
    """A program's ``run`` with OpenBLAS's thread setting chosen by trial (see the module's
    text); ``note`` says what was chosen and why (``explain()`` shows it).

    Example:
        >>> t = Tuned(lambda x: x + 1, "own")
        >>> t(1), t.note
        (2, 'OpenBLAS threads: its own (CHAINRULE_JIT_BLAS=own)')
    """

    def __init__(self, run, mode: str):
        self.run = run
        self.pick = None if mode == "auto" else mode
        self.times: dict = {"own": [], "one": []}
        self.block = [0, 0, 0.0, 0]  # blocks done, calls in this one, its start, timed calls
        self.trials = 0  # trials finished
        self.until = 0  # calls left before the next trial
        self.pick_was = None  # the last trial's pick
        self.note = ("OpenBLAS threads: being tried" if self.pick is None else
                     f"OpenBLAS threads: {'its own' if mode == 'own' else 'one'} "
                     f"(CHAINRULE_JIT_BLAS={mode})")

    def __call__(self, *args, **kwargs):
        if self.trials and self.pick is not None:
            self.until -= 1
            if self.until < 0:  # time for the next trial
                self.pick, self.times = None, {"own": [], "one": []}
                self.block = [0, 0, 0.0, 0]
        if self.pick == "own":
            return self.run(*args, **kwargs)
        if self.pick == "one":
            with one_blas_thread():
                return self.run(*args, **kwargs)
        b = self.block
        mode = ("own", "one")[b[0] % 2]
        t = time.perf_counter()
        if b[1] == 0:
            b[2] = t
        if mode == "one":
            with one_blas_thread():
                res = self.run(*args, **kwargs)
        else:
            res = self.run(*args, **kwargs)
        end = time.perf_counter()
        if isinstance(res, GuardFailed):
            return res  # not a step: neither counted nor timed
        b[1] += 1
        if b[1] > SKIP and (mode == "own" or t - b[2] >= SETTLE):
            self.times[mode].append(end - t)
            b[3] += 1
        if b[3] >= BLOCK:
            b[:] = [b[0] + 1, 0, 0.0, 0]
            if b[0] >= 2 * ROUNDS:
                self._choose()
        return res

    def _choose(self):
        own, one = (statistics.median(self.times[k]) for k in ("own", "one"))
        before = self.pick_was
        self.pick = self.pick_was = "own" if own < MARGIN * one else "one"
        self.until = RECHECK << self.trials
        self.trials += 1
        self.note = (f"OpenBLAS threads: {'one' if self.pick == 'one' else 'its own'} "
                     f"(trial {self.trials}: {own * 1e3:.3f} ms per call on its own threads, "
                     f"{one * 1e3:.3f} ms on one; tried again after {self.until} calls)")
        if before != self.pick:
            logger.info("chainrule.jit: %s", self.note)


def tuned(run):
    """``run`` wrapped in a :class:`Tuned` where OpenBLAS's thread count can be set and is
    above one (else ``run`` itself).

    Example:
        >>> f = tuned(len)
        >>> f([1, 2]) == 2
        True
    """
    calls = blas_threads()
    mode = _mode()
    if calls is None or (mode == "auto" and calls[0]() <= 1):
        return run
    return Tuned(run, mode)
