"""Helpers shared by the benchmark scripts: thread settings and the version line.

Run the scripts from the repository root (``python benchmarks/NAME.py``); this folder is then
on ``sys.path``, so they import ``common`` directly.
"""

from __future__ import annotations

import os
import platform


def set_threads(n: int | None) -> None:
    """Use ``n`` BLAS/OpenMP threads (and torch threads, when torch is installed).

    Must run before NumPy is imported: OpenBLAS reads the variables when it loads.
    """
    if not n:
        return
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(n)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def versions() -> str:
    """Python, NumPy, torch (with its thread count) and chainrule versions, on one line."""
    import numpy as np

    import chainrule

    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        parts.append("torch not installed")
    parts.append(f"chainrule {chainrule.__version__}")
    return ", ".join(parts)
