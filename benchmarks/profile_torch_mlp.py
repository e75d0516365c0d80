"""Per-op time of PyTorch eager's benchmark step (torch.profiler), to set beside
``profile_jit.py``'s per-line time of chainrule's jitted step.

    python benchmarks/profile_torch_mlp.py                     # mlp, 1 thread
    python benchmarks/profile_torch_mlp.py --threads 2 --steps 200 --top 25
    python benchmarks/profile_torch_mlp.py --workload lenet

The workload's torch step (``workloads.py``, the step ``run.py`` times) is built and warmed
up, then ``--steps`` calls run under ``torch.profiler`` (CPU activity only). The header gives
the median step time without the profiler (the profiler adds about 1-2 us per op), then each
op's self CPU time per step (total over the steps / steps), largest first, and how many
times a step calls it. Self time is the op's own, not its children's (``aten::linear`` is
shown with ``aten::addmm`` below it, where the product runs).

Example (1 thread, the MLP step; a busy machine):

    $ python benchmarks/profile_torch_mlp.py --top 3
    mlp, torch 2.13.0+cpu, threads 1, 100 steps, load 0.90 1.12 1.10
    step median 5.41 ms (unprofiled)
      self us/step  calls/step  op
          2731.4          2.0  aten::addmm
          ...
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args(argv)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)  # before a BLAS loads
    import libs
    import torch
    import workloads
    from torch.profiler import ProfilerActivity, profile

    ns = libs.LIBRARIES["torch"].load(a.threads)
    step = workloads.build(a.workload, ns)[0]["main"]
    for _ in range(30):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            step()
    rows = [(e.self_cpu_time_total / a.steps, e.count / a.steps, e.key)
            for e in prof.key_averages()]
    print(f"{a.workload}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{a.steps} steps, load " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"step median {statistics.median(times) * 1e3:.2f} ms (unprofiled); ops' self "
          f"time sum {sum(r[0] for r in rows) / 1e3:.2f} ms/step (profiled)")
    print("  self us/step  calls/step  op")
    for us, n, key in sorted(rows, reverse=True)[:a.top]:
        print(f"  {us:12.1f} {n:11.1f}  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
