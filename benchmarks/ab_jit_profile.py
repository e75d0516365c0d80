"""Per-op A/B in one process: two jitted steps of a workload (A and B, built by an A/B script's
``build(workload, flag)``: ``ab_jit_tiles``, ``ab_jit_fused_ln``; ``ab_jit_passes:NAME`` for
``ab_jit_passes.builder(NAME)``),
both with their programs instrumented as ``profile_jit.py`` does (a clock read after every
line), taking turns in rounds of 5 steps; then each called function's summed line medians in
A and in B. On a loaded machine the sum over a few lines moves less than the whole step.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_profile.py ab_jit_tiles transformer 20
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys

from profile_jit import _callee, instrumented


def _arm(build, workload, flag):
    step = build(workload, flag)[0]
    for _ in range(30):  # replays (and backend c's OpenBLAS trial)
        step()
    prog = step._program(-1)
    run, stamps, lines = instrumented(prog)
    holder = prog.run if hasattr(prog.run, "run") else prog
    return {"step": step, "run": run, "stamps": stamps, "lines": lines, "holder": holder,
            "orig": holder.run, "per": {}}


def main(script: str, workload: str, rounds: int, top: int = 18) -> None:
    module, _, arg = script.partition(":")
    mod = importlib.import_module(module)
    build = mod.builder(arg) if arg else mod.build
    arms = {"A": _arm(build, workload, False), "B": _arm(build, workload, True)}
    for _ in range(rounds):
        for a in arms.values():
            a["holder"].run = a["run"]
            try:
                for _ in range(5):
                    a["stamps"].clear()
                    a["step"]()
                    for (_, t0), (k, t1) in zip(a["stamps"], a["stamps"][1:]):
                        a["per"].setdefault(k, []).append(t1 - t0)
            finally:
                a["holder"].run = a["orig"]
    tot = {}
    for name, a in arms.items():
        env = a["orig"].__globals__
        by: dict = {}
        for k, v in a["per"].items():
            c = _callee(a["lines"][k], env)
            by[c] = by.get(c, 0.0) + statistics.median(v)
        tot[name] = by
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
    print(f"{workload}, {script}: A = build(False), B = build(True); {rounds} rounds of 5 "
          f"steps; load {' '.join(load)}")
    names = sorted(set(tot["A"]) | set(tot["B"]), key=lambda c: -max(tot["A"].get(c, 0),
                                                                      tot["B"].get(c, 0)))
    for c in names[:top]:
        print(f"  {c:24s} A {tot['A'].get(c, 0) * 1e6:9.1f} us   B "
              f"{tot['B'].get(c, 0) * 1e6:9.1f} us")
    print(f"  lines' sum: A {sum(tot['A'].values()) * 1e3:.2f} ms, "
          f"B {sum(tot['B'].values()) * 1e3:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "transformer",
         int(sys.argv[3]) if len(sys.argv) > 3 else 20)
