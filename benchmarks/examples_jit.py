"""Eager against ``--jit`` for the four issue-4 examples and ``chainrule train`` (issue 12).

Each run is a fresh process (so the jit's warm-up and compile time are in its figure), the
two modes alternating, eager first, ``--rounds`` times. An example's figure is the time of its
``train()`` call (no import, no evaluation); ``chainrule train``'s is the whole command's wall
time (a checkpoint is written to a temporary folder). Prints the medians, jit/eager, and the
jitted step's trace + compile time.

    python benchmarks/examples_jit.py --rounds 3
    python benchmarks/examples_jit.py --only lenet_digits --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# example -> keyword arguments of its train(): the full default run where it takes under a
# minute eagerly on a quiet 2-core host, else a documented shorter one
RUNS = {
    "lenet_digits": {},
    "char_transformer": {"steps": 300},
    "lstm_adding": {"steps": 500},
    "ddpm": {"steps": 1000},
}

_DRIVER = """
import importlib.util, json, re, sys, time
import chainrule as cr
spec = importlib.util.spec_from_file_location("ex", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
made = []
real = cr.jit
cr.jit = lambda fn=None, **kw: made.append(real(fn, **kw)) or made[-1]
t0 = time.perf_counter()
out = mod.train(**json.loads(sys.argv[2]), verbose=False, jit=sys.argv[3] == "1")
wall = time.perf_counter() - t0
ms = sum(float(a) + float(b) for a, b in re.findall(r"trace ([0-9.]+) ms, compile ([0-9.]+) ms",
                                                     made[0].explain())) if made else 0.0
print(json.dumps({"wall": wall, "steps": len(out[-1]), "compile_ms": ms,
                  "backend": made[0].backend if made else None}))
"""


def run_example(name: str, jit: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run([sys.executable, "-c", _DRIVER, str(ROOT / "examples" / f"{name}.py"),
                          json.dumps(RUNS[name]), "1" if jit else "0"],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_cli(jit: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "chainrule.cli", "train", "--quiet", "--out", out]
        t0 = time.perf_counter()
        res = subprocess.run(cmd + (["--jit"] if jit else []), capture_output=True, text=True,
                             env=env, check=True)
        wall = time.perf_counter() - t0
    assert "test accuracy" in res.stdout, res.stdout
    # the defaults: 30 epochs of ceil(1,438 / 32) = 45 batches
    return {"wall": wall, "steps": 30 * 45, "compile_ms": 0.0, "backend": None}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=[*RUNS, "chainrule_train"])
    args = ap.parse_args(argv)
    print(f"load {open('/proc/loadavg').read().split()[:3]}", flush=True)
    for name in args.only:
        times = {False: [], True: []}
        for r in range(args.rounds):
            for jit in (False, True):
                res = run_cli(jit) if name == "chainrule_train" else run_example(name, jit)
                times[jit].append(res)
                print(f"  {name} round {r + 1} {'jit  ' if jit else 'eager'} "
                      f"{res['wall']:7.2f} s  compile {res['compile_ms']:6.0f} ms", flush=True)
        e = statistics.median(x["wall"] for x in times[False])
        j = statistics.median(x["wall"] for x in times[True])
        steps = times[False][0]["steps"]
        print(f"{name}: {steps} steps, eager {e:.2f} s ({1e3 * e / steps:.2f} ms/step), jit "
              f"{j:.2f} s ({1e3 * j / steps:.2f} ms/step), jit/eager {j / e:.2f}; compile "
              f"{statistics.median(x['compile_ms'] for x in times[True]):.0f} ms; backend "
              f"{times[True][0]['backend']}; load {open('/proc/loadavg').read().split()[:3]}",
              flush=True)


if __name__ == "__main__":
    main()
