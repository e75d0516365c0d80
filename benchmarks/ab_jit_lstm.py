"""A/B in one process: backend "c" on the lstm workload, four ways of running the LSTM:

- A (NumPy steps): the ``lstm_scan`` impl and the raw backward recorded op by op;
- B (C per step): ``jit/crnn.py``'s step loops called once per time step from a Python loop,
  with NumPy's product between (as before the whole scans moved to C);
- C (C scan, 1 thread): the whole forward and backward scans in C, one thread;
- D (C scan, threads): the same, the batch rows split over OpenMP's threads (as run).

Steps of the four take turns in rounds of 5; medians in ms per step, with the load average,
the first traced call (trace and compile, warm kernel cache) of each, and the medians of the
forward and backward scan calls alone (the same wrappers, the workload's shapes).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ab_jit_lstm.py 25
    PYTHONPATH=src python benchmarks/ab_jit_lstm.py 25            # default threads (the cores)
"""

from __future__ import annotations

import os
import sys
import time

import libs
import numpy as np
import workloads

from chainrule.jit import cbackend, crnn, kcache, render_c
from chainrule.primitives import fast
from chainrule.primitives.recurrent import _lstm_backward_raw

VARIANTS = {"A (NumPy steps)": ("numpy", 0), "B (C per step)": ("step", 0),
            "C (C scan, 1 thread)": ("scan", 1), "D (C scan, threads)": ("scan", 0)}


def build(how: str):
    """The lstm workload's jitted step (after its first traced call) and that call's time."""
    full, entry, gemms = cbackend._OP_MODULES, fast.K.lstm_backward, crnn.gemm_pointers
    if how == "numpy":
        cbackend._OP_MODULES = tuple(m for m in full if m.__name__ != "chainrule.jit.crnn")
        fast.K.lstm_backward = _lstm_backward_raw  # the kernel itself: recorded op by op
    elif how == "step":
        crnn.gemm_pointers = dict  # no gemm to call from C: the per-step loops
    try:
        steps, check = workloads.build("lstm", libs.load("chainrule-jit-c", None))
        step = steps["main"]
        step()  # the jit's eager warm-up call
        t = time.perf_counter()
        step()  # traced and compiled
        first = time.perf_counter() - t
    finally:
        cbackend._OP_MODULES, fast.K.lstm_backward, crnn.gemm_pointers = full, entry, gemms
    return step, check, first


def scans(rounds: int) -> None:
    """Medians of the forward and backward scans alone (float32, L 50, B 32, H 128)."""
    decl, src = crnn.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    rng = np.random.default_rng(0)
    L, B, H = 50, 32, 128
    xg = rng.standard_normal((L, B, 4 * H)).astype(np.float32)
    w = (0.1 * rng.standard_normal((4 * H, H))).astype(np.float32)
    h0, c0 = np.zeros((B, H), np.float32), np.zeros((B, H), np.float32)
    gemms, crnn.gemm_pointers = crnn.gemm_pointers, dict
    try:
        ways = {"per step": crnn.wrappers(mod.lib, mod.ffi)}
    finally:
        crnn.gemm_pointers = gemms
    ways["scan, 1 thread"] = ways["scan, threads"] = crnn.wrappers(mod.lib, mod.ffi)
    out = ways["per step"]["lstm_scan"](np, xg, w, h0, c0, reverse=False)
    gs = (np.ones_like(out[0]), None, None)
    times = {k: ([], []) for k in ways}
    for _ in range(rounds):
        for k, f in ways.items():
            crnn.THREADS[0] = 1 if k == "scan, 1 thread" else 0
            t0 = time.perf_counter()
            f["lstm_scan"](np, xg, w, h0, c0, reverse=False)
            t1 = time.perf_counter()
            f["kernel.lstm_backward"](gs, xg, w, h0, c0, out, False)
            times[k][0].append(t1 - t0)
            times[k][1].append(time.perf_counter() - t1)
    crnn.THREADS[0] = 0
    for k, (fw, bw) in times.items():
        print(f"  scans alone, {k}: forward {np.median(fw) * 1e3:.2f} ms, backward "
              f"{np.median(bw) * 1e3:.2f} ms")


def main(rounds: int) -> None:
    runs = {k: build(how) for k, (how, _) in VARIANTS.items()}
    for step, _, _ in runs.values():
        step()
    times = {k: [] for k in runs}
    load = os.getloadavg()[0]
    for _ in range(rounds):
        for k, (step, _, _) in runs.items():
            crnn.THREADS[0] = VARIANTS[k][1]
            t = time.perf_counter()
            for _ in range(5):
                step()
            times[k].append((time.perf_counter() - t) / 5)
    crnn.THREADS[0] = 0
    print(f"lstm, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for k, (step, check, first) in runs.items():
        print(f"  {k}: {np.median(times[k]) * 1e3:.2f} ms per step, first traced call "
              f"{first:.3f} s, {len(step.graph().splitlines())} lines of graph, "
              f"loss {check(step())}")
    scans(rounds)
    print(f"  load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
