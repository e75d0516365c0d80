"""A/B in one process: backend "c" on the lstm workload with the LSTM's C steps (B: the
``lstm_scan`` impl and the raw backward kernel recorded as one op, both run by
``jit/crnn.py``) against without them (A: as before, the NumPy impl and the raw backward
recorded op by op). Steps of the two take turns in rounds of 5; medians in ms per step, with
the load average, and the first traced call (trace and compile, warm kernel cache) of each.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ab_jit_lstm.py 25
"""

from __future__ import annotations

import os
import sys
import time

import libs
import numpy as np
import workloads

from chainrule.jit import cbackend
from chainrule.primitives import fast
from chainrule.primitives.recurrent import _lstm_backward_raw


def build(with_c: bool):
    """The lstm workload's jitted step (after its first traced call) and that call's time."""
    full, entry = cbackend._OP_MODULES, fast.K.lstm_backward
    if not with_c:
        cbackend._OP_MODULES = tuple(m for m in full if m.__name__ != "chainrule.jit.crnn")
        fast.K.lstm_backward = _lstm_backward_raw  # the kernel itself: recorded op by op
    try:
        return traced("lstm")
    finally:
        cbackend._OP_MODULES, fast.K.lstm_backward = full, entry


def traced(workload: str):
    """The workload's jitted step on backend "c" after its first traced call, its check and
    that call's time."""
    steps, check = workloads.build(workload, libs.load("chainrule-jit-c", None))
    step = steps["main"]
    step()  # the jit's eager warm-up call
    t = time.perf_counter()
    step()  # traced and compiled
    return step, check, time.perf_counter() - t


def main(rounds: int) -> None:
    interleave("lstm", {"A (NumPy steps)": build(False), "B (C steps)": build(True)}, rounds)


def interleave(title: str, runs: dict, rounds: int) -> None:
    """Time ``runs`` (label -> (step, check, first call's time)) taking turns in rounds of 5
    steps, and print each one's median, first call, graph size and loss."""
    for step, _, _ in runs.values():
        step()
    times = {k: [] for k in runs}
    load = os.getloadavg()[0]
    for _ in range(rounds):
        for k, (step, _, _) in runs.items():
            t = time.perf_counter()
            for _ in range(5):
                step()
            times[k].append((time.perf_counter() - t) / 5)
    print(f"{title}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for k, (step, check, first) in runs.items():
        print(f"  {k}: {np.median(times[k]) * 1e3:.2f} ms per step, first traced call "
              f"{first:.3f} s, {len(step.graph().splitlines())} lines of graph, "
              f"loss {check(step())}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
