"""Helper shared by the in-process benchmark scripts: the thread setting.

Run the scripts from the repository root (``python benchmarks/NAME.py``); this folder is then
on ``sys.path``, so they import ``common`` directly.
"""

from __future__ import annotations

import os

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
