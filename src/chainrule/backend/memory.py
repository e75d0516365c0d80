"""Heap settings for the NumPy backend: freed array memory is kept for reuse.

A training step allocates and frees the same large temporaries (activations, gradients,
optimizer scratch) every step. glibc serves blocks above its mmap threshold (128 KiB,
raised dynamically to at most a few MiB) with fresh mappings and trims the top of the heap
once more than twice that is free, so each step asks the kernel for the same pages again
and pays a page fault (and zeroing) per 4 KiB. On the transformer benchmark
(the transformer workload of benchmarks/, 2 cores) that was about 7,000 page faults and 6-11 ms of
system time in a 42 ms step; PyTorch's step, with fewer temporaries, took about 1,000.

So, on Linux with glibc, chainrule raises the mmap threshold to 32 MiB and the trim
threshold to 64 MiB when it is imported (``mallopt``; the page faults per step fall to
zero). The cost is that up to 64 MiB of freed memory stays with the process, as with
PyTorch's caching allocators. The setting is process-wide (NumPy and PyTorch in the same
process use the same heap); set ``CHAINRULE_MALLOC=0`` before importing chainrule to keep
glibc's defaults. Other platforms are left as they are.

Example:
    >>> from chainrule.backend import memory
    >>> memory.STATE["tuned"] in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 64 << 20

STATE = {"tuned": False}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module text); True when applied."""
    if os.environ.get("CHAINRULE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    STATE["tuned"] = ok
    return ok
