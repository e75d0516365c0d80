"""Helper shared by the in-process benchmark scripts: the thread setting.

Run the scripts from the repository root (``python benchmarks/NAME.py``); this folder is then
on ``sys.path``, so they import ``common`` directly.
"""

from __future__ import annotations

import os
import statistics
import time

# every thread-count variable the libraries here read (OpenBLAS, MKL, Accelerate, OpenMP...)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def set_threads(n: int | None) -> None:
    """Use ``n`` BLAS/OpenMP threads (and torch threads, when torch is installed).

    Must run before NumPy is imported: OpenBLAS reads the variables when it loads.
    """
    if not n:
        return
    for v in THREAD_VARS:
        os.environ[v] = str(n)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def interleaved(step, setters, rounds: int = 40, reps: int = 5, warmup: int = 3) -> list:
    """Median seconds per step under each variant (a function setting it up), the variants
    taking turns every ``reps`` steps so that drift on a shared machine hits all alike."""
    times = [[] for _ in setters]
    for _ in range(warmup):
        for s in setters:
            s()
            step()
    for _ in range(rounds):
        for s, acc in zip(setters, times):
            s()
            step()  # the first step after a switch is not timed
            for _ in range(reps):
                t0 = time.perf_counter()
                step()
                acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
