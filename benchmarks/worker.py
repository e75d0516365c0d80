"""One benchmark process: one library, one workload (started by ``run.py``, not by hand).

    python benchmarks/worker.py LIBRARY WORKLOAD [--threads N] [--warmup-s S] [--measure-s S]
                                [--min-steps N] [--max-steps N] [--cpus 0,1]

The runner sets the thread variables in this process's environment before it starts, so they
are in place before any library is imported; with ``--cpus`` the process (and every thread it
starts later) is confined to those CPUs before any import.

The worker builds the workload, runs the main step ``check_steps`` times and records the check
values (losses; the first call also pays any compilation), warms up, then times steps until
both ``--measure-s`` seconds and ``--min-steps`` steps have passed (or ``--max-steps``). Extra
products of the workload are timed in the same process in blocks of a few calls, taking turns
with the main step. The last line of stdout is ``RESULT`` and a JSON object: per timed step its
median, quartiles, minimum, maximum and count (seconds), the check values, the library versions
and the thread pools that threadpoolctl sees; or an ``error``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

BLOCK = 5  # calls of one step in a row when several steps take turns


def _stats(ts: list) -> dict:
    q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
    return {"median": statistics.median(ts), "q1": q[0], "q3": q[2], "min": min(ts),
            "max": max(ts), "n": len(ts)}


def measure(steps: dict, warmup_s: float, measure_s: float, min_steps: int,
            max_steps: int) -> dict:
    """Warm every step up for ``warmup_s`` seconds (two calls at least), then time them,
    taking turns in blocks of ``BLOCK`` calls; returns name -> statistics (seconds)."""
    clock = time.perf_counter
    end = clock() + warmup_s
    while True:
        for fn in steps.values():
            fn()
            fn()
        if clock() >= end:
            break
    times: dict = {k: [] for k in steps}
    block = 1 if len(steps) == 1 else BLOCK
    end = clock() + measure_s
    while True:
        for k, fn in steps.items():
            for _ in range(block):
                t0 = clock()
                fn()
                times[k].append(clock() - t0)
        n = min(len(t) for t in times.values())
        if n >= max_steps or (n >= min_steps and clock() >= end):
            break
    return {k: _stats(t) for k, t in times.items()}


def _versions(ns) -> dict:
    import numpy

    v = {"python": platform.python_version(), "numpy": numpy.__version__}
    for mod in ("chainrule", "torch", "jax", "jaxlib"):
        m = sys.modules.get(mod)
        if m is not None:
            v[mod] = getattr(m, "__version__", "?")
    if ns.family == "torchlike" and ns.lib.__name__ == "torch":
        v["torch threads"] = ns.lib.get_num_threads()
    return v


def _pools() -> list:
    try:
        import threadpoolctl
    except ImportError:
        return ["threadpoolctl not installed"]
    out = []
    for p in threadpoolctl.threadpool_info():
        desc = f"{p.get('internal_api')} {p.get('version') or ''}".strip()
        extra = [x for x in (p.get("threading_layer"), p.get("architecture")) if x]
        extra.append(f"{p.get('num_threads')} threads")
        out.append(f"{desc} ({', '.join(extra)})")
    return out


def run(lib: str, workload: str, threads: int | None, warmup_s: float, measure_s: float,
        min_steps: int, max_steps: int) -> dict:
    import libs
    import workloads

    t0 = time.perf_counter()
    ns = libs.load(lib, threads)
    steps, check = workloads.build(workload, ns)
    t1 = time.perf_counter()
    values = []
    for _ in range(workloads.WORKLOADS[workload].check_steps):
        values += [float(v) for v in check(steps["main"]())]
    t2 = time.perf_counter()
    stats = measure(steps, warmup_s, measure_s, min_steps, max_steps)
    return {"library": lib, "workload": workload, "steps": stats, "check": values,
            "build_s": t1 - t0, "check_s": t2 - t1, "versions": _versions(ns),
            "pools": _pools(), "threads": threads}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("library")
    ap.add_argument("workload")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--measure-s", type=float, default=2.0)
    ap.add_argument("--min-steps", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--cpus", help="comma-separated CPUs to run on (set before any import)")
    args = ap.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        res = run(args.library, args.workload, args.threads, args.warmup_s, args.measure_s,
                  args.min_steps, args.max_steps)
    except Exception as e:  # reported in the runner's table, with the traceback on stderr
        traceback.print_exc()
        res = {"library": args.library, "workload": args.workload,
               "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    print("RESULT " + json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
