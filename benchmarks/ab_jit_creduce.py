"""A/B in one process: backend "c" with the row-wise reductions in C (B: ``jit/creduce.py``:
softmax, log-softmax, layer norm and its raw backward recorded as one op, ``sum_to`` of bias
gradients, the attention's softmax over the keys and its fused backward recorded as one op)
against without them (A: the NumPy impls, the layer-norm and attention backward kernels
recorded op by op, as before). Steps of the two take turns in rounds of 5; medians in ms per
step, with the load average, and the first traced call (trace and compile, warm kernel cache)
of each.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_creduce.py transformer 25
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
from chainrule.primitives.attention import _self_attention_vjp_np
from chainrule.primitives.reduce import _ln_vjp_rows


def build(workload: str, with_c: bool):
    """The workload's jitted step (after its first traced call) and that call's time."""
    full, ln, att = (cbackend._OP_MODULES, fast.K.layer_norm_vjp_rows,
                     fast.K.self_attention_vjp)
    if not with_c:
        cbackend._OP_MODULES = tuple(m for m in full if m.__name__ != "chainrule.jit.creduce")
        fast.K.layer_norm_vjp_rows = _ln_vjp_rows  # the kernels themselves: op by op
        fast.K.self_attention_vjp = _self_attention_vjp_np
    try:
        steps, check = workloads.build(workload, libs.load("chainrule-jit-c", None))
        step = steps["main"]
        step()  # the jit's eager warm-up call
        t = time.perf_counter()
        step()  # traced and compiled
        first = time.perf_counter() - t
    finally:
        cbackend._OP_MODULES, fast.K.layer_norm_vjp_rows = full, ln
        fast.K.self_attention_vjp = att
    return step, check, first


def main(workload: str, rounds: int) -> None:
    runs = {"A (NumPy reductions)": build(workload, False),
            "B (C reductions)": build(workload, True)}
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
    print(f"{workload}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for k, (step, check, first) in runs.items():
        print(f"  {k}: {np.median(times[k]) * 1e3:.2f} ms per step, first traced call "
              f"{first:.3f} s, {len(step.graph().splitlines())} lines of graph, "
              f"loss {check(step())}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15)
