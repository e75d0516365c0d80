"""A/B in one process: backend "c"'s step with NumPy's OpenBLAS on its own threads ("own")
against OpenBLAS held at one thread with the products split over OpenMP's threads ("one":
``cblas``'s ``matmul`` and ``cgemm``'s ``linear``, ``linear_relu``, ``linear_add``), the
same held setting with only ``matmul`` split (``one, matmul split only``: before the
``cgemm`` split). No PyTorch arm: with torch imported first, backend c's modules bind
their OpenMP calls to torch's ``libgomp.so.1`` (loaded ``RTLD_GLOBAL``, the same soname),
whose wait policy was read before ``kcache`` asks for ``PASSIVE``, and with torch imported
after, torch runs on the system's libgomp with that policy: either way one arm is changed by
the other; ``run.py`` (a process per library) gives the ratios to torch. Rounds take
turns; before each round the process sleeps ``SETTLE`` seconds (every arm alike) so that
OpenBLAS's threads, which spin for ~0.1 s after a threaded product, are asleep again and do
not take a core from the next round; then ``WARM`` untimed steps (the first steps after a
sleep ran ~1.5x slower in the held setting: the other vCPU and OpenMP's threads asleep),
then ``STEPS`` timed. Medians per step: wall clock and the process's CPU time, with the
load average.

    cd benchmarks && PYTHONPATH=../src python ab_jit_onepool.py transformer 15
    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \\
        python ab_jit_onepool.py transformer 15
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from ab_jit_lstm import traced

from chainrule.jit import cgemm

# seconds slept before each round (OpenBLAS's threads spin ~0.1 s after a threaded product);
# then WARM untimed steps (the idle core and the threads woken again), then STEPS timed
SETTLE, WARM, STEPS = 0.3, 3, 10


def jitted(workload: str, blas: str):
    """The workload's step on backend c with ``CHAINRULE_JIT_BLAS=blas`` (read at compile)."""
    was = os.environ.get("CHAINRULE_JIT_BLAS")
    os.environ["CHAINRULE_JIT_BLAS"] = blas
    try:
        return traced(workload)[0]
    finally:
        if was is None:
            del os.environ["CHAINRULE_JIT_BLAS"]
        else:
            os.environ["CHAINRULE_JIT_BLAS"] = was


def main(workload: str, rounds: int) -> None:
    own, one = jitted(workload, "own"), jitted(workload, "one")
    align = cgemm.ALIGN

    def linear_split(on: bool):
        # cgemm splits no product whose longer side is under 2 * ALIGN
        cgemm.ALIGN = align if on else 1 << 30

    arms = {"own": (own, True), "one": (one, True),
            "one, matmul split only": (one, False)}
    wall: dict = {k: [] for k in arms}
    cpu: dict = {k: [] for k in arms}
    for step, _ in arms.values():
        step()
    load = os.getloadavg()[0]
    for _ in range(rounds):
        for k, (step, split) in arms.items():
            linear_split(split)
            time.sleep(SETTLE)
            for _ in range(WARM):
                step()
            t, c = time.perf_counter(), time.process_time()
            for _ in range(STEPS):
                step()
            wall[k].append((time.perf_counter() - t) / STEPS)
            cpu[k].append((time.process_time() - c) / STEPS)
    linear_split(True)
    print(f"{workload}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"{rounds} rounds of {WARM} + {STEPS} steps, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for k in arms:
        print(f"  {k}: {statistics.median(wall[k]) * 1e3:.2f} ms wall, "
              f"{statistics.median(cpu[k]) * 1e3:.2f} ms CPU per step")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15)
