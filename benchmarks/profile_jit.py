"""Per-op time of a jitted benchmark step: where the replay of a ``chainrule.jit`` program
spends its time, line by line of the generated program.

    python benchmarks/profile_jit.py mlp                      # numpy backend, 2 threads
    python benchmarks/profile_jit.py transformer --threads 1 --steps 30 --top 40

The workload's ``chainrule-jit`` step (``workloads.py``, the same step ``run.py`` times) is
built, warmed up (the warm-up call and the compile), and its compiled program's source
(``step.source()``) is compiled again with a clock read after every statement. The copy runs
in place of the program for ``--steps`` calls; each line's median time is printed, largest
first, with its mean (a line whose mean is far above its median was stalled in some calls:
on a busy machine, a multi-threaded BLAS call waiting for a descheduled thread), the
function it calls (``_linear``, ``multiply``, ...) and the line itself. The
header gives the medians of the step, of the program and of the time spent outside the
program (the cache key, reading the inputs, applying the effects), and the sum of the lines'
medians. The clock reads add ~0.1 us
a line, so the figures are for finding where the time goes, not for comparisons with other
libraries (``run.py`` does those). Numpy backend only (backend "c" kernels show as one line
each).

Example (the MLP's top lines are its matrix products):

    $ python benchmarks/profile_jit.py mlp --top 3
    mlp, chainrule-jit (backend numpy), threads 2, 50 steps, load 0.52 0.61 0.70
    step 3.406 ms, program 3.258 ms, outside the program 0.148 ms (medians over the steps); ...
       median       mean  calls                line
      706.4 us   731.0 us  _linear              v23 = f33(np, v1, v3, v4)
    ...
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
    env = dict(program.run.__globals__)
    env.update(_stamps=stamps, _clock=time.perf_counter)
    exec(compile(tree, "<chainrule.jit profile>", "exec"), env)
    return env["program"], stamps, lines


def _callee(src: str, env: dict) -> str:
    """The name of the function a program line calls (``f12(...)``, ``u3(...)``)."""
    call = src.split("=", 1)[-1].strip() if "=" in src.split("(", 1)[0] else src.strip()
    name = call.split("(", 1)[0]
    fn = env.get(name)
    return getattr(fn, "__name__", "") if fn is not None else ""


def profile(workload: str, threads: int, steps: int):
    """(step times, program times, {statement index: [times]}, program lines, program
    globals)."""
    import libs
    import workloads

    ns = libs.LIBRARIES["chainrule-jit"].load(threads)
    step = workloads.build(workload, ns)[0]["main"]
    for _ in range(3):  # warm-up call, compile, one replay
        step()
    program = step._program(-1)
    run, stamps, lines = instrumented(program)
    original = program.run
    program.run = run
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
        program.run = original
    return totals, inside, per, lines, original.__globals__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args(argv)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)  # before NumPy loads BLAS
    totals, inside, per, lines, env = profile(a.workload, a.threads, a.steps)
    med = {k: statistics.median(v) for k, v in per.items()}
    step, run = statistics.median(totals), statistics.median(inside)
    outside = statistics.median([t - i for t, i in zip(totals, inside)])
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists(
        "/proc/loadavg") else "?"
    print(f"{a.workload}, chainrule-jit (backend numpy), threads {a.threads}, {a.steps} steps, "
          f"load {load}")
    print(f"step {step * 1e3:.3f} ms, program {run * 1e3:.3f} ms, outside the program "
          f"{outside * 1e3:.3f} ms (medians over the steps); the lines' medians add up to "
          f"{sum(med.values()) * 1e3:.3f} ms")
    print("   median       mean  calls                line")
    for k in sorted(med, key=med.get, reverse=True)[:a.top]:
        src = lines[k].replace("\n", "; ")
        mean = statistics.fmean(per[k])
        print(f"{med[k] * 1e6:7.1f} us {mean * 1e6:7.1f} us  {_callee(lines[k], env):20s} "
              f"{src[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
