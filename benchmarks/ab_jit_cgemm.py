"""A/B in one process: backend "c" with ``jit/cgemm.py`` (``linear`` as one gemm call with its
bias folded in, the embedding backward's row scatter in C), fused kernels over rows and
columns (``render_c``: broadcast inputs read as runs) and the attention as one C loop over
(sample, head) blocks (``creduce``), B, against without them (A: the impls, flat kernels
reading a row vector through ``i % cols``, the attention's batched NumPy steps), and PyTorch
eager (the same workload's step, ``workloads.py``). Steps take turns in rounds of 5; medians
in ms per step (wall clock, and the process's CPU time: at one thread the CPU time is the
work itself, less sensitive to other processes on a loaded machine), with the load average,
and the first traced call of each jitted step (warm kernel cache).

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_cgemm.py transformer 25 1
    cd benchmarks && PYTHONPATH=../src python ab_jit_cgemm.py mlp 25   # the machine's threads

The third argument is the thread count given to PyTorch (``torch.set_num_threads``); set the
environment variables to match it.
"""

from __future__ import annotations

import statistics
import sys
import time

import libs
import workloads
from ab_jit_lstm import interleave, traced

from chainrule.jit import cbackend, creduce, render_c


def build(workload: str, with_new: bool):
    """The workload's jitted step on backend c (after its first traced call), with or
    without the new paths."""
    full, min_row, gemms = cbackend._OP_MODULES, render_c.MIN_ROW, creduce.gemm_pointers
    if not with_new:
        cbackend._OP_MODULES = tuple(m for m in full if m.__name__ != "chainrule.jit.cgemm")
        render_c.MIN_ROW = 1 << 62
        creduce.gemm_pointers = dict  # the attention's batched NumPy steps
    try:
        return traced(workload)
    finally:
        cbackend._OP_MODULES, render_c.MIN_ROW = full, min_row
        creduce.gemm_pointers = gemms


def traced_patched(workload: str, patches: dict):
    """The workload's jitted step on backend c (``ab_jit_lstm.traced``) built with
    ``{(object, attribute): value}`` set for the build, each set back after."""
    saved = {k: getattr(*k) for k in patches}
    for (obj, name), value in patches.items():
        setattr(obj, name, value)
    try:
        return traced(workload)
    finally:
        for (obj, name), value in saved.items():
            setattr(obj, name, value)


class _Eager:
    """A PyTorch step as ``interleave`` reads a jitted one (no graph: 0 lines)."""

    def __init__(self, step):
        self.step = step

    def __call__(self):
        return self.step()

    def graph(self) -> str:
        return ""


def torch_step(workload: str, threads):
    """PyTorch eager's step for ``workload`` (its first call done), as run.py times it."""
    steps, check = workloads.build(workload, libs.load("torch", threads))
    t = time.perf_counter()
    steps["main"]()
    return _Eager(steps["main"]), check, time.perf_counter() - t


def main(workload: str, rounds: int, threads) -> None:
    cpu_interleave(workload, {"A (before)": build(workload, False),
                              "B (cgemm, rows, attention loop)": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


def cpu_interleave(workload: str, runs: dict, rounds: int) -> None:
    """``ab_jit_lstm.interleave`` over ``runs``, then each label's median CPU time per step."""
    cpu = {k: [] for k in runs}
    # the CPU time of each label's rounds, taken around interleave's own timing
    before = {k: (lambda k=k: cpu[k].append(time.process_time())) for k in runs}
    interleave(workload, runs, rounds, before=before)
    end = time.process_time()
    order = list(runs)
    starts = sorted((t, k) for k in order for t in cpu[k]) + [(end, None)]
    per = {k: [] for k in order}
    for (t, k), (t2, _) in zip(starts, starts[1:]):
        per[k].append((t2 - t) / 5)
    print("  CPU time per step (process, medians): " + ", ".join(
        f"{k} {statistics.median(v) * 1e3:.2f} ms" for k, v in per.items()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
