"""Per-op time of PyTorch eager's benchmark step (``workloads.py``, the step ``run.py`` times),
by ``torch.profiler``: the counterpart of ``profile_jit.py --by-callee`` for the other side of
the ratio.

    python benchmarks/profile_torch.py transformer --threads 1 --steps 30

The step is built and warmed up, then ``--steps`` calls run under ``torch.profiler.profile``
(CPU activity). The header gives the median step time without the profiler (measured before)
and the profiled steps' total; the table each op's self CPU time per step (time in the op
itself, not in the ops it calls, so the rows add up to the step) and its calls per step,
largest first. The profiler adds some microseconds per op: the per-op figures say where the
time goes; the ratio between libraries is ``run.py``'s.

Example (a run on the shared 2-core AMD EPYC VM with other jobs running, 2026-12-07; the
unprofiled median swung with the load):

    $ python benchmarks/profile_torch.py transformer --threads 1 --top 3
    transformer, torch 2.13.0+cpu, threads 1, 30 steps, load 2.01 1.15 1.01
    median step 119.8 ms unprofiled; profiled self CPU 79.8 ms per step
      self/step  calls/step  op
      38334.0 us       20.0  aten::mm
      11640.0 us        7.0  aten::addmm
       5377.0 us        2.0  aten::_scaled_dot_product_flash_attention_for_cpu_backward
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def profile(workload: str, threads: int, steps: int):
    """(unprofiled step times, {op name: (self CPU us over all steps, calls)})."""
    import libs
    import torch
    import workloads

    ns = libs.LIBRARIES["torch"].load(threads)
    step = workloads.build(workload, ns)[0]["main"]
    for _ in range(10):
        step()
    plain = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t)
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
    ops = {}
    for ev in prof.key_averages():
        ops[ev.key] = (ev.self_cpu_time_total, ev.count)
    return plain, ops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args(argv)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)
    import torch

    plain, ops = profile(a.workload, a.threads, a.steps)
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists(
        "/proc/loadavg") else "?"
    total = sum(t for t, _ in ops.values()) / a.steps
    print(f"{a.workload}, torch {torch.__version__}, threads {a.threads}, {a.steps} steps, "
          f"load {load}")
    print(f"median step {statistics.median(plain) * 1e3:.1f} ms unprofiled; profiled self "
          f"CPU {total / 1e3:.1f} ms per step")
    print("  self/step  calls/step  op")
    for name, (t, n) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:a.top]:
        print(f"{t / a.steps:9.1f} us {n / a.steps:10.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
