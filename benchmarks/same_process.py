"""The same-process bias, shown: two libraries' steps in one process slow each other down.

An in-process experiment, not a benchmark (``run.py`` is the benchmark: one process per
library). In one process it builds a workload for two libraries, then times each library's
step in blocks of ``--block`` steps run back to back ("alone": the other library idle in the
same process), and in blocks where every step of one library is followed by one of the other
("beside": as the old side-by-side scripts ran them, call by call). Blocks take turns, so that
drift hits both settings alike. With PyTorch and a NumPy-based library on few cores, the
OpenMP pool of one and the OpenBLAS pool of the other compete, and the step "beside" is
slower than "alone".

    python benchmarks/same_process.py                       # lstm, chainrule and torch
    python benchmarks/same_process.py --workload mlp --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import set_threads


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="lstm")
    ap.add_argument("--libs", nargs=2, default=["chainrule", "torch"], metavar="L")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=5)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    import libs
    import workloads

    a, b = args.libs
    steps = {lib: workloads.build(args.workload, libs.load(lib, args.threads))[0]["main"]
             for lib in (a, b)}
    for s in steps.values():
        for _ in range(3):
            s()
    times = {(lib, mode): [] for lib in (a, b) for mode in ("alone", "beside")}
    clock = time.perf_counter
    for _ in range(args.rounds):
        for lib, other in ((a, b), (b, a)):
            s = steps[lib]
            s()  # the first step after the other library ran is not timed
            for _ in range(args.block):
                t0 = clock()
                s()
                times[(lib, "alone")].append(clock() - t0)
            for _ in range(args.block):
                steps[other]()
                t0 = clock()
                s()
                times[(lib, "beside")].append(clock() - t0)
    print(f"# {args.workload}, threads {args.threads or 'default'}, {args.rounds} rounds of "
          f"{args.block}-step blocks, one process; medians in ms")
    for lib in (a, b):
        alone = statistics.median(times[(lib, "alone")])
        beside = statistics.median(times[(lib, "beside")])
        print(f"{lib:<10} alone {alone * 1e3:8.2f}   beside {beside * 1e3:8.2f}   "
              f"beside / alone {beside / alone:.2f}x")
    ra = statistics.median(times[(a, "alone")]) / statistics.median(times[(b, "alone")])
    rb = statistics.median(times[(a, "beside")]) / statistics.median(times[(b, "beside")])
    print(f"{a} / {b}: {ra:.2f}x from the 'alone' blocks, {rb:.2f}x from the 'beside' steps",
          file=sys.stdout)


if __name__ == "__main__":
    main()
