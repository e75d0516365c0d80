"""chainrule eager against ``chainrule.jit`` on the benchmark workloads, in one process per
job, the variants taking turns every few steps.

``run.py`` puts every library in a process of its own, as comparisons between libraries
must (two libraries in one process fight over the cores). For chainrule against itself one
process is the sharper instrument: the host's slow spells, which move ``run.py``'s
per-process medians by 30% at 2 threads on the shared VMs, hit both variants alike when they
alternate every ``--reps`` steps (``common.interleaved``). Each job is a fresh process with
the thread setting of ``run.py`` (thread variables set before any import; at N threads the
job is confined to the first N CPUs); the jobs of the thread settings take turns.

Prints one line per job (median ms per step of each variant, and each variant's ratio to
the first) and, per workload and thread setting, the medians over the jobs.

    python benchmarks/ab_eager_jit.py                                 # lenet transformer lstm
    python benchmarks/ab_eager_jit.py --workloads transformer --threads default 1 --jobs 3
    python benchmarks/ab_eager_jit.py --libs chainrule chainrule-jit chainrule-jit-c
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def child(workload: str, lib_names: list, rounds: int, reps: int) -> dict:
    """Time ``lib_names``' steps of ``workload`` interleaved in this process."""
    import common
    import libs
    import workloads

    steps = []
    for name in lib_names:
        ns = libs.load(name, None)  # the thread variables are already set in the environment
        steps.append(workloads.build(workload, ns)[0]["main"])
    current = [steps[0]]

    def step():
        current[0]()

    setters = [lambda s=s: current.__setitem__(0, s) for s in steps]
    medians = common.interleaved(step, setters, rounds=rounds, reps=reps)
    return {"ms": [m * 1e3 for m in medians], "load": os.getloadavg()[0]}


def run_job(workload: str, lib_names: list, threads: str, rounds: int, reps: int) -> dict:
    """One job in a fresh process with ``threads``' settings (``run.py``'s environment)."""
    import run

    n = None if threads == "default" else int(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", workload,
           "--libs", *lib_names, "--rounds", str(rounds), "--reps", str(reps)]
    cpus = run.pinned_cpus(n)
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    out = subprocess.run(cmd, env=run.child_env(n, "same"), capture_output=True, text=True,
                         timeout=900)
    if out.returncode:
        raise SystemExit(f"job {workload} threads {threads} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["lenet", "transformer", "lstm"])
    ap.add_argument("--libs", nargs="+", default=["chainrule", "chainrule-jit"])
    ap.add_argument("--threads", nargs="+", default=["default", "1"])
    ap.add_argument("--jobs", type=int, default=3, help="jobs per workload and thread setting")
    ap.add_argument("--rounds", type=int, default=20, help="turns per variant in a job")
    ap.add_argument("--reps", type=int, default=3, help="timed steps per turn")
    ap.add_argument("--child", metavar="WORKLOAD", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.libs, args.rounds, args.reps)))
        return
    import run

    info = run.host_info()
    print(f"host: {info['cpu']}, {info['cores']} cores; chainrule commit {info.get('commit')}; "
          f"load {run.load_avg()}", flush=True)
    results: dict = {}
    for job in range(args.jobs):
        for w in args.workloads:
            for t in args.threads:
                r = run_job(w, args.libs, t, args.rounds, args.reps)
                results.setdefault((w, t), []).append(r["ms"])
                cells = "  ".join(f"{lib} {ms:7.2f} ms ({ms / r['ms'][0]:.2f})"
                                  for lib, ms in zip(args.libs, r["ms"]))
                print(f"job {job + 1}: {w:11s} threads {t:7s} {cells}  load {r['load']:.2f}",
                      flush=True)
    print(f"\nmedians over {args.jobs} job(s); in brackets the ratio to {args.libs[0]} "
          "(median of the jobs' ratios)")
    for (w, t), jobs in results.items():
        cells = []
        for k, lib in enumerate(args.libs):
            ms = statistics.median(j[k] for j in jobs)
            ratio = statistics.median(j[k] / j[0] for j in jobs)
            cells.append(f"{lib} {ms:7.2f} ms ({ratio:.2f})")
        print(f"{w:11s} threads {t:7s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
