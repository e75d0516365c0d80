"""A/B in one process: backend "c" on the lstm workload, four ways of running the LSTM:

- A (NumPy steps): the ``lstm_scan`` impl and the raw backward recorded op by op;
- B (C per step): ``jit/crnn.py``'s step loops called once per time step from a Python loop,
  with NumPy's product between (as before the whole scans moved to C);
- C (C scan, 1 thread): the whole forward and backward scans in C, one thread;
- D (C scan, rows split): the same, the batch rows split over OpenMP's threads (as run);
- E (C scan, units split): the hidden units split over OpenMP's threads
  (``CHAINRULE_JIT_LSTM_SPLIT=units``);
- F (as D, whole products): D with each step's product in one call (before the calls of a
  few rows, ``crnn.ROWS``).

D and E split only where the scans do (OpenBLAS on one thread: ``OPENBLAS_NUM_THREADS=1``, or
backend c's trial picking it, forced by ``CHAINRULE_JIT_BLAS=one``). Steps of the six take
turns in rounds of 5; medians in ms per step, with the load average, the first traced call
(trace and compile, warm kernel cache) of each; then the medians of the forward and backward
scan calls alone (the workload's shapes, float32), taking turns too, for the LSTM and, with
the same shapes, the GRU (NumPy versions, C scans on 1 thread with OpenBLAS on its own
threads and on one, and split over OpenMP's threads, OpenBLAS held at one inside).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ab_jit_lstm.py 25
    PYTHONPATH=src python benchmarks/ab_jit_lstm.py 25            # default threads (the cores)
    CHAINRULE_JIT_BLAS=one PYTHONPATH=src python benchmarks/ab_jit_lstm.py 25
"""

from __future__ import annotations

import os
import sys
import time

import libs
import numpy as np
import workloads

from chainrule.jit import cbackend, crnn, kcache, render_c
from chainrule.primitives import REGISTRY, fast, recurrent
from chainrule.primitives.recurrent import _lstm_backward_raw

# label: (how the step is built, scan threads (0: OpenMP's count), split, rows per product
# call (0: the trial's pick, 1 << 30: whole products))
VARIANTS = {"A (NumPy steps)": ("numpy", 0, "rows", 0), "B (C per step)": ("step", 0, "rows", 0),
            "C (C scan, 1 thread)": ("scan", 1, "rows", 0),
            "D (C scan, rows split)": ("scan", 0, "rows", 0),
            "E (C scan, units split)": ("scan", 0, "units", 0),
            "F (as D, whole products)": ("scan", 0, "rows", 1 << 30)}


def build(how: str):
    """The lstm workload's jitted step (after its first traced call) and that call's time."""
    full, entry, gemms = cbackend._OP_MODULES, fast.K.lstm_backward, crnn.gemm_pointers
    if how == "numpy":
        cbackend._OP_MODULES = tuple(m for m in full if m.__name__ != "chainrule.jit.crnn")
        fast.K.lstm_backward = _lstm_backward_raw  # the kernel itself: recorded op by op
    elif how == "step":
        crnn.gemm_pointers = dict  # no gemm to call from C: the per-step loops
    try:
        return traced("lstm")
    finally:
        cbackend._OP_MODULES, fast.K.lstm_backward, crnn.gemm_pointers = full, entry, gemms


def traced(workload: str):
    """The workload's jitted step on backend "c" after its first traced call, its check and
    that call's time."""
    steps, check = workloads.build(workload, libs.load("chainrule-jit-c", None))
    step = steps["main"]
    step()  # the jit's eager warm-up call
    t = time.perf_counter()
    step()  # traced and compiled
    return step, check, time.perf_counter() - t


def scans(rounds: int) -> None:
    """Medians of the forward and backward scans alone (float32, L 50, B 32, H 128), the
    LSTM's and the GRU's: the NumPy versions, the C per-step loops (LSTM), the C scans on one
    thread (OpenBLAS on its own count, and on one) and split over OpenMP's threads (LSTM: by
    rows and by units)."""
    decl, src = crnn.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    rng = np.random.default_rng(0)
    L, B, H = 50, 32, 128
    gemms, crnn.gemm_pointers = crnn.gemm_pointers, dict
    try:
        per_step = crnn.wrappers(mod.lib, mod.ffi)
    finally:
        crnn.gemm_pointers = gemms
    in_c = crnn.wrappers(mod.lib, mod.ffi)
    split = max(2, mod.lib.crnn_max_threads())  # the split variants' threads
    get, put = crnn.blas_threads()
    own = get()
    for cell, width in (("lstm", 4), ("gru", 3)):
        xg = rng.standard_normal((L, B, width * H)).astype(np.float32)
        w = (0.1 * rng.standard_normal((width * H, H))).astype(np.float32)
        h0 = np.zeros((B, H), np.float32)
        args = (xg, w, h0, np.zeros((B, H), np.float32)) if cell == "lstm" else (
            xg, w, np.zeros(width * H, np.float32), h0)
        numpy = {f"{cell}_scan": REGISTRY[f"{cell}_scan"].impl,
                 f"kernel.{cell}_backward": getattr(recurrent, f"_{cell}_backward_raw")}
        # label: (functions, scan threads, split, OpenBLAS's count: 0 its own, rows per
        # product call: 0 the trial's pick)
        whole = 1 << 30
        ways = {"NumPy": (numpy, 1, "rows", 0, 0), "scan, 1 thread": (in_c, 1, "rows", 0, 0),
                "scan, 1 thread, OpenBLAS 1": (in_c, 1, "rows", 1, 0),
                "scan, 1 thread, OpenBLAS 1, whole products": (in_c, 1, "rows", 1, whole),
                "scan, rows split": (in_c, split, "rows", 0, 0),
                "scan, rows split, whole products": (in_c, split, "rows", 0, whole)}
        if cell == "lstm":
            ways = {"NumPy": ways["NumPy"], "C per step": (per_step, 1, "rows", 0, 0), **ways,
                    "scan, units split": (in_c, split, "units", 0, 0)}
        out = in_c[f"{cell}_scan"](np, *args, reverse=False)
        gs = (np.ones_like(out[0]), None, None)
        times = {k: ([], []) for k in ways}
        for _ in range(rounds):
            for k, (f, n, how, blas, rows) in ways.items():
                crnn.THREADS[0], crnn.SPLIT[0], crnn.ROWS[0] = n, how, rows
                put(blas or own)
                t0 = time.perf_counter()
                f[f"{cell}_scan"](np, *args, reverse=False)
                t1 = time.perf_counter()
                f[f"kernel.{cell}_backward"](gs, *args, out, False)
                times[k][0].append(t1 - t0)
                times[k][1].append(time.perf_counter() - t1)
                if f is in_c:  # the split asked for really ran
                    assert crnn.SPLITS[f"{cell}_scan"] == (how if n > 1 else "none")
        crnn.THREADS[0], crnn.SPLIT[0], crnn.ROWS[0] = 0, None, 0
        put(own)
        for k, (fw, bw) in times.items():
            print(f"  {cell} scans alone, {k}: forward {np.median(fw) * 1e3:.2f} ms, backward "
                  f"{np.median(bw) * 1e3:.2f} ms")


def main(rounds: int) -> None:
    runs = {k: build(v[0]) for k, v in VARIANTS.items()}

    def setting(n, how, rows):
        crnn.THREADS[0], crnn.SPLIT[0], crnn.ROWS[0] = n, how, rows

    threads = {k: (lambda v=v: setting(*v[1:])) for k, v in VARIANTS.items()}
    try:
        interleave("lstm", runs, rounds, before=threads)
    finally:
        setting(0, None, 0)
    scans(rounds)
    print(f"  load at the end {os.getloadavg()[0]:.2f}")


def interleave(title: str, runs: dict, rounds: int, before: dict | None = None) -> None:
    """Time ``runs`` (label -> (step, check, first call's time)) taking turns in rounds of 5
    steps, and print each one's median, first call, graph size and loss; ``before`` (label ->
    function) runs before each of that label's rounds."""
    for step, _, _ in runs.values():
        step()
    times = {k: [] for k in runs}
    load = os.getloadavg()[0]
    for _ in range(rounds):
        for k, (step, _, _) in runs.items():
            if before and k in before:
                before[k]()
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
