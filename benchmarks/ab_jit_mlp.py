"""A/B of the MLP benchmark step (784-512-512-10, batch 128, SGD) in one process: variants of
the jitted step, and torch eager, taking turns every 5 steps (``ab_jit_lstm.interleave``), so
that each sees the same load.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/ab_jit_mlp.py 40
    python benchmarks/ab_jit_mlp.py 40 --variants numpy-impls numpy torch

Variants: ``numpy-impls`` (backend numpy, every primitive calling its impl:
``numpy_backend.LOWER`` off), ``numpy`` (backend numpy as shipped), ``c`` (backend c),
``c-serial-update`` (backend c, the SGD update's C loop on one thread: ``cupdate.PARALLEL``
set to 0), ``c-omp-update`` (backend c, the large plain SGD updates in the C loop on
OpenMP's threads, not the impl's BLAS ``?axpy`` on OpenBLAS's: ``cupdate.SGD_BLAS`` off),
``c-direct`` (backend c, every ``linear`` in the row-major layout: ``cgemm.LAYOUT``
forced to "direct", no trial), ``c-nomask`` (backend c, the first layer's ReLU mask
written out by the second layer's mask kernel and multiplied alone, as before
2026-12-07 22:30: ``fuse._starts_later_group`` off; set at compile time),
``c-norelu`` (backend c, each ReLU a NumPy ``maximum`` after its ``linear``:
``cbackend.FUSE_RELU`` off at compile time), ``c-noloss`` (backend c, the cross-entropy as
its recorded NumPy ops: ``cbackend.FUSE_LOSS`` off at compile time), ``c-nocolsum``
(backend c, the bias gradients' column sums as ops after the mask kernels:
``fuse.FOLD_COLSUMS`` off at compile time), ``c-nosgdmany`` (backend c, one SGD update call
per parameter: ``cupdate.GROUP_SGD`` off at compile time), ``c-before-h31`` (all of issue
12's 00:40 UTC session changes off: the last three), ``torch`` (torch eager, the runner's step),
``eager`` (chainrule eager, the runner's step);
``numpy-twopass`` and ``eager-twopass``: the same with the SGD update's BLAS pass off
(``backend.blas.ENABLED``: NumPy's two passes, as before 2026-12-07 evening). The thread
setting is the environment's
(``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``, set before the start; torch is given the same
count). Figures at 2 threads on a loaded 2-core machine are OpenBLAS's: its threaded
products wait for a descheduled thread (the MLP step on backend numpy took 48-72 ms instead
of 3.2 at load 2.5-4). Each line: median ms per step over the rounds, and the ratio to torch
where it ran; the last line the process's CPU time per step (all its threads), the steadier
figure on a busy host at 1 thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

VARIANTS = ("numpy-impls", "numpy", "numpy-twopass", "c", "c-serial-update", "c-omp-update",
            "c-direct", "c-nomask", "c-norelu", "c-noloss", "c-nocolsum", "c-nosgdmany",
            "c-before-h31",
            "eager", "eager-twopass", "torch")


_LAYOUT = os.environ.get("CHAINRULE_JIT_LINEAR", "auto")


def _threads():
    v = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")
    return int(v) if v and v.isdigit() else None


def _set_update(variant: str) -> None:
    """The update loops' parallel thresholds for ``variant`` (read at each call)."""
    from chainrule.backend import blas
    from chainrule.jit import cgemm, cupdate

    blas.ENABLED = not variant.endswith("-twopass")
    cgemm.LAYOUT[0] = "direct" if variant == "c-direct" else _LAYOUT
    serial = variant == "c-serial-update"
    cupdate.SGD_BLAS[0] = variant not in ("c-serial-update", "c-omp-update")
    cupdate.PARALLEL[:] = [0, 0] if serial else [cupdate.PARALLEL_SGD, cupdate.PARALLEL_ADAM]


def build(variant: str):
    """(step, check, first call's seconds) of one variant."""
    import libs
    import workloads

    from chainrule.jit import numpy_backend

    name = {"torch": "torch", "numpy-impls": "chainrule-jit", "numpy": "chainrule-jit",
            "numpy-twopass": "chainrule-jit", "eager": "chainrule",
            "eager-twopass": "chainrule"}.get(variant, "chainrule-jit-c")
    ns = libs.load(name, _threads())
    steps, check = workloads.build("mlp", ns)
    step = steps["main"]
    from chainrule.jit import cbackend, cupdate, fuse

    numpy_backend.LOWER = variant != "numpy-impls"
    later = fuse._starts_later_group
    if variant == "c-nomask":
        fuse._starts_later_group = lambda *a: False
    cbackend.FUSE_RELU[0] = variant != "c-norelu"
    cbackend.FUSE_LOSS[0] = variant not in ("c-noloss", "c-before-h31")
    fuse.FOLD_COLSUMS[0] = variant not in ("c-nocolsum", "c-before-h31")
    cupdate.GROUP_SGD[0] = variant not in ("c-nosgdmany", "c-before-h31")
    _set_update(variant)
    try:
        t = time.perf_counter()
        step()
        step()  # the warm-up call, then the trace and compile
        first = time.perf_counter() - t
        for _ in range(30):  # backend c's OpenBLAS trial
            step()
    finally:
        numpy_backend.LOWER = True
        fuse._starts_later_group = later
        cbackend.FUSE_RELU[0] = True
        cbackend.FUSE_LOSS[0] = True
        fuse.FOLD_COLSUMS[0] = True
        cupdate.GROUP_SGD[0] = True
    if not hasattr(step, "graph"):  # torch, chainrule eager
        step.graph = lambda: ""
    return step, check, first


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", type=int, nargs="?", default=30)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    a = ap.parse_args(argv)
    import numpy as np
    from ab_jit_lstm import interleave

    runs = {v: build(v) for v in a.variants}
    times: dict = {}
    cpu: dict = {}

    def timed(step, k):
        def run():
            t, c = time.perf_counter(), time.process_time()
            out = step()
            times.setdefault(k, []).append(time.perf_counter() - t)
            cpu.setdefault(k, []).append(time.process_time() - c)
            return out
        run.graph = step.graph
        return run

    interleave("mlp", {k: (timed(s, k), c, f) for k, (s, c, f) in runs.items()}, a.rounds,
               before={k: (lambda k=k: _set_update(k)) for k in runs})
    if any(v.startswith("c") for v in runs):  # backend c's layout picks for linear
        from chainrule.jit import cgemm

        for line in cgemm.layout_notes():
            print("  " + line)
    if "torch" in times:
        ref = np.median(times["torch"])
        print("  ratios to torch (medians of single steps): " + ", ".join(
            f"{k} {np.median(v) / ref:.3f}" for k, v in times.items()))
    # CPU time of the process (all its threads): on a busy host, where the wall clock counts
    # the time the step waited for a core, this is the steadier figure at 1 thread
    print("  CPU ms per step (medians of single steps): " + ", ".join(
        f"{k} {np.median(v) * 1e3:.3f}" for k, v in cpu.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
