"""Per-op time of a jitted benchmark step: where the replay of a ``chainrule.jit`` program
spends its time, line by line of the generated program.

    python benchmarks/profile_jit.py mlp                      # numpy backend, 2 threads
    python benchmarks/profile_jit.py transformer --threads 1 --steps 30 --top 40

The workload's ``chainrule-jit`` step (``workloads.py``, the same step ``run.py`` times) is
built, warmed up (the warm-up call and the compile), and its compiled program's source
(``step.source()``) is compiled again with a clock read after every statement. The copy runs
in place of the program for ``--steps`` calls. The header gives the medians over the steps of
the step, of the program and of the time outside it (the cache key, reading the inputs,
applying the effects), and the sum of the lines' medians; then each line's median and mean,
largest median first, the function it calls and the line itself. A line whose mean is far
above its median was stalled in some calls (on a busy machine: a multi-threaded BLAS call
waiting for a descheduled thread). The clock reads add ~0.1 us a line: the figures say where
the time goes; comparisons with other libraries are ``run.py``'s. ``--lib chainrule-jit-c``
profiles backend c's program (its C kernels are single lines), ``--by-callee`` sums per function.

Example (the MLP's top lines are its matrix products; on a busy machine, load 2.7):

    $ python benchmarks/profile_jit.py mlp --top 3 --threads 1
    mlp, chainrule-jit (backend numpy), threads 1, 50 steps, load 2.73 2.30 1.66
    medians: step 6.276 ms, program 6.127 ms, outside 0.137 ms; lines' sum 5.551 ms
       median       mean  calls                line
     1330.1 us  2195.0 us  _linear              v23 = f33(np, v1, v3, v4)
     1076.0 us  1732.9 us  <lambda>             v79 = f73(np, v78, v77)
      831.6 us  1167.4 us  _linear              v25 = f35(np, v24, v5, v6)
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def instrumented(program):
    """A copy of a numpy-backend program's function that appends ``(statement index,
    perf_counter())`` to the returned list after each top-level statement, and the
    statements' source lines."""
    tree = ast.parse(program.source)
    fn = tree.body[0]
    lines = [ast.unparse(st) for st in fn.body]
    stamps: list = []
    body = [ast.parse("_stamps.append((-1, _clock()))").body[0]]
    for k, st in enumerate(fn.body):
        body.append(st)
        body.append(ast.parse(f"_stamps.append(({k}, _clock()))").body[0])
    fn.body = body
    ast.fix_missing_locations(tree)
    env = dict(getattr(program.run, "run", program.run).__globals__)  # (a cblas.Tuned's)
    env.update(_stamps=stamps, _clock=time.perf_counter)
    exec(compile(tree, "<chainrule.jit profile>", "exec"), env)
    return env["program"], stamps, lines


def _callee(src: str, env: dict) -> str:
    """The name of the function a program line calls (``f12(...)``, ``u3(...)``)."""
    call = src.split("=", 1)[-1].strip() if "=" in src.split("(", 1)[0] else src.strip()
    name = call.split("(", 1)[0]
    fn = env.get(name)
    return getattr(fn, "__name__", "") if fn is not None else ""


def profile(workload: str, threads: int, steps: int, lib: str = "chainrule-jit"):
    """(step times, program times, {statement index: [times]}, program lines, program
    globals)."""
    import libs
    import workloads

    ns = libs.LIBRARIES[lib].load(threads)
    step = workloads.build(workload, ns)[0]["main"]
    for _ in range(30):  # warm-up call, compile, replays (backend c's OpenBLAS trial too)
        step()
    program = step._program(-1)
    run, stamps, lines = instrumented(program)
    # backend c's run is a cblas.Tuned: its inner run is replaced, so its pick still applies
    holder = program.run if hasattr(program.run, "run") else program
    original = holder.run
    holder.run = run
    per: dict = {}
    totals, inside = [], []
    try:
        for _ in range(steps):
            stamps.clear()
            t0 = time.perf_counter()
            step()
            totals.append(time.perf_counter() - t0)
            inside.append(stamps[-1][1] - stamps[0][1])
            for (_, a), (k, b) in zip(stamps, stamps[1:]):
                per.setdefault(k, []).append(b - a)
    finally:
        holder.run = original
    return totals, inside, per, lines, original.__globals__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--lib", default="chainrule-jit", choices=("chainrule-jit", "chainrule-jit-c"),
                    help="backend numpy (chainrule-jit) or c (chainrule-jit-c)")
    ap.add_argument("--by-callee", action="store_true",
                    help="also sum the lines' medians per called function")
    a = ap.parse_args(argv)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)  # before NumPy loads BLAS
    totals, inside, per, lines, env = profile(a.workload, a.threads, a.steps, a.lib)
    med = {k: statistics.median(v) for k, v in per.items()}
    step, run = statistics.median(totals), statistics.median(inside)
    outside = statistics.median([t - i for t, i in zip(totals, inside)])
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists(
        "/proc/loadavg") else "?"
    print(f"{a.workload}, {a.lib}, threads {a.threads}, {a.steps} steps, "
          f"load {load}")
    print(f"medians: step {step * 1e3:.3f} ms, program {run * 1e3:.3f} ms, outside "
          f"{outside * 1e3:.3f} ms; lines' sum {sum(med.values()) * 1e3:.3f} ms")
    print("   median       mean  calls                line")
    for k in sorted(med, key=med.get, reverse=True)[:a.top]:
        src = lines[k].replace("\n", "; ")
        mean = statistics.fmean(per[k])
        print(f"{med[k] * 1e6:7.1f} us {mean * 1e6:7.1f} us  {_callee(lines[k], env):20s} "
              f"{src[:90]}")
    if a.by_callee:
        by: dict = {}
        for k, v in med.items():
            name = _callee(lines[k], env)
            n, t = by.get(name, (0, 0.0))
            by[name] = (n + 1, t + v)
        print("\n  total      lines  callee")
        for name, (n, t) in sorted(by.items(), key=lambda kv: -kv[1][1])[:a.top]:
            print(f"{t * 1e6:8.1f} us {n:5d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
