"""A small shared thread pool for kernels that split their work.

NumPy (and CuPy's host side) releases the GIL inside each ufunc, copy and BLAS call, so a
kernel can cut its work into contiguous parts and run them on a few threads, as PyTorch's
kernels do, when the work is large enough to pay for the hand-off (~20 us). The thread count
follows OMP_NUM_THREADS / OPENBLAS_NUM_THREADS when set (so a one-thread comparison stays one
thread), else the cores, at most 4. A fork gets a fresh pool.

Example:
    >>> from chainrule.backend.threads import parallel
    >>> seen = []
    >>> parallel(lambda lo, hi: seen.append((lo, hi)), 10, 100)  # too little work: one call
    >>> seen
    [(0, 10)]
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

POOL: list = [None, 0, 0]  # executor, its workers, the pid that made it
# Elements of work per thread below which a kernel stays on one thread. Handing work to a
# pool thread costs more than it looks on a virtual machine: a sleeping thread's CPU is
# halted, and waking it took ~37 us here, then the two threads trade the GIL at every NumPy
# call (each trade can wait for another wake-up). At 1 << 16 the GELU of a 1024x512 float32
# array took 2.4 ms on two threads against 1.7 ms on one, and the transformer benchmark step
# was 4% faster with no pool at all (A/B in one process); 4M-element passes still gained
# 1.7x. So only passes over millions of elements are split.
MIN_WORK = 1 << 20
# > 0 while every part must run on the calling thread, in order: a jit trace is recording
# (chainrule/jit/session.py), and its recorder numbers values and appends ops from one thread
SERIAL = [0]


def num_threads() -> int:
    """Threads a kernel may use."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return min(int(v), 4)
    return min(os.cpu_count() or 1, 4)


def parallel(fn, n: int, min_per_thread: int) -> None:
    """Run ``fn(lo, hi)`` over contiguous parts of ``range(n)``, one part per thread, with at
    least ``min_per_thread`` items per part; the calling thread takes the first part. While
    ``SERIAL[0]`` is set, ``fn(0, n)`` runs on the calling thread."""
    k = min(num_threads(), n // max(min_per_thread, 1))
    if k <= 1 or SERIAL[0]:
        fn(0, n)
        return
    if POOL[0] is None or POOL[1] < k - 1 or POOL[2] != os.getpid():
        POOL[:] = [ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="chainrule"), k - 1,
                   os.getpid()]
    cuts = [n * i // k for i in range(k + 1)]
    futures = [POOL[0].submit(fn, cuts[i], cuts[i + 1]) for i in range(1, k)]
    fn(cuts[0], cuts[1])
    for f in futures:
        f.result()
