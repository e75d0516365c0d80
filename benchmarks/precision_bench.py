"""`chainrule train`'s step (MLP 64-256-128-10, batch 32, Adam) in float32 and under
``chainrule.autocast`` with bfloat16, and where the bfloat16 time goes.

Both variants run in one process, in alternating rounds (one library, one thread pool: no
cross-library interference); each round times ``--steps`` steps and the table shows the median
per-step wall and CPU time over the rounds. ``--profile`` adds a cProfile of bfloat16 steps.

    python benchmarks/precision_bench.py --rounds 7 --steps 200 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from common import set_threads, versions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    set_threads(args.threads)

    import contextlib

    import numpy as np

    import chainrule as cr
    from chainrule.cli import build_model
    from chainrule.data import load_digits
    from chainrule.nn import functional as F

    X, y = load_digits()
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, X.shape[0], 32) for _ in range(args.steps)]
    setups = {}
    for name in ("fp32", "bf16"):
        cr.manual_seed(0)
        model = build_model(64, [256, 128], 10, "relu")
        opt = cr.optim.Adam(model.parameters(), lr=1e-3)
        ctx = cr.autocast("cpu", dtype=cr.bfloat16) if name == "bf16" else \
            contextlib.nullcontext()
        setups[name] = (model, opt, ctx)

    def run(name, n):
        model, opt, ctx = setups[name]
        for idx in batches[:n]:
            with ctx:
                loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    for name in setups:  # warm-up (and ml_dtypes' first import)
        run(name, 20)
    res = {n: ([], []) for n in setups}
    for _ in range(args.rounds):
        for name in setups:
            w0, c0 = time.perf_counter(), time.process_time()
            run(name, args.steps)
            res[name][0].append((time.perf_counter() - w0) / args.steps * 1e6)
            res[name][1].append((time.process_time() - c0) / args.steps * 1e6)
    print(versions())
    print(f"{'precision':10s} {'wall us/step':>14s} {'cpu us/step':>13s}")
    for name, (wall, cpu) in res.items():
        print(f"{name:10s} {statistics.median(wall):14.0f} {statistics.median(cpu):13.0f}")
    med = {n: [statistics.median(v) for v in r] for n, r in res.items()}
    print(f"bf16/fp32: wall {med['bf16'][0] / med['fp32'][0]:.2f}x, "
          f"cpu {med['bf16'][1] / med['fp32'][1]:.2f}x")
    if args.profile:
        for name in setups:
            prof = cProfile.Profile()
            prof.runcall(run, name, args.steps)
            print(f"\n--- {name}: top functions by own time ({args.steps} steps)")
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
