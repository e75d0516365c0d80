"""`chainrule train`'s step, eager against chainrule.jit, in one process: the same model
(64-256-128-10 MLP, Adam), batches of 32 digits-sized inputs in a shuffled order, the
step's host reads (``float(loss)``, the correct count) as ``chainrule train`` does them.

Prints microseconds per step for the whole loop body and for the captured function alone.
It times chainrule against itself only (one process is fine for that; see BENCHMARKS.md).

    python benchmarks/ab_train_step.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F


def make(jit: bool):
    """(loop step, captured function) for a fresh model and optimiser."""
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    opt = cr.optim.Adam(model.parameters(), lr=1e-3)

    def train_step(xb, yb):
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, logits.detach()

    f = cr.jit(train_step) if jit else train_step

    def step(xb, yb):
        loss, logits = f(xb, yb)
        return float(loss), int((logits.argmax(1) == yb).sum())

    return step, f


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    n, bs = 1437, 32
    X, y = cr.randn(n, 64), cr.randint(0, 10, (n,))
    for name in ("eager", "jit"):
        step, f = make(name == "jit")
        loop = []
        for r in range(args.rounds):
            perm = np.random.default_rng(r).permutation(n)
            t = time.perf_counter()
            for i in range(0, n - bs + 1, bs):
                idx = perm[i:i + bs]
                step(X[idx], y[idx])
            loop.append((time.perf_counter() - t) / (n // bs) * 1e6)
        xb, yb = X[perm[:bs]], y[perm[:bs]]
        for _ in range(5):
            f(xb, yb)
        t = time.perf_counter()
        for _ in range(300):
            f(xb, yb)
        alone = (time.perf_counter() - t) / 300 * 1e6
        print(f"{name:5s}  loop {statistics.median(loop):6.0f} us/step   "
              f"captured function alone {alone:6.0f} us/call")


if __name__ == "__main__":
    main()
