"""`chainrule train`'s step (``chainrule.cli.local_step``), eager against ``--jit``, in one
process: its default model (64-256-128-10 MLP, Adam), batches of 32 digits-sized inputs in a
shuffled order, with the step's host reads (``float(loss)``, the correct count).

Prints the median microseconds per step over the rounds (the first pass, which warms up
and compiles, is not counted). It times chainrule against itself only (one process is
fine for that; see BENCHMARKS.md).

    python benchmarks/ab_train_step.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from types import SimpleNamespace

import numpy as np

import chainrule as cr
import chainrule.nn as nn
from chainrule.cli import local_step


def make(jit: bool):
    """``chainrule.cli.local_step`` itself (jitted under ``jit``) on a fresh model and
    optimiser."""
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    opt = cr.optim.Adam(model.parameters(), lr=1e-3)
    return local_step(SimpleNamespace(model=model, opt=opt, precision=contextlib.nullcontext(),
                                      args=SimpleNamespace(jit=jit)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    n, bs = 1437, 32
    X, y = cr.randn(n, 64), cr.randint(0, 10, (n,))
    for name in ("eager", "jit"):
        step = make(name == "jit")
        times = []
        for r in range(args.rounds + 1):  # round 0 (warm-up, compiles) is not counted
            perm = np.random.default_rng(r).permutation(n)
            t = time.perf_counter()
            for i in range(0, n - bs + 1, bs):
                idx = perm[i:i + bs]
                step(X[idx], y[idx])
            times.append((time.perf_counter() - t) / (n // bs) * 1e6)
        print(f"{name:5s}  {statistics.median(times[1:]):6.0f} us/step")


if __name__ == "__main__":
    main()
