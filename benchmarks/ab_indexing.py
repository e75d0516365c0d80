"""A/B of indexing in two source trees of chainrule, in ONE process (as ab_trees.py does for
the workloads): basic slicing ``x[1:3, ::2]`` of a 64x64 tensor that requires grad (forward
alone, and forward + backward), and an embedding's forward + backward (nn.Embedding(1000, 64),
a batch of 64x32 indices, ``.sum().backward()``). Blocks of calls take turns, the order
alternating every round; prints medians in microseconds per call and their ratio.

    git archive REV src | tar -x -C /tmp/before
    python benchmarks/ab_indexing.py /tmp/before/src src --rounds 31
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPEATS = {"x[1:3, ::2] forward": 2000, "x[1:3, ::2] forward + backward": 500,
           "embedding 64x32 of 1000x64, forward + backward": 50}


def cases(cr) -> dict:
    """The timed calls for one imported chainrule module ``cr``."""
    x = cr.randn(64, 64, requires_grad=True)
    emb = cr.nn.Embedding(1000, 64)
    ids = cr.tensor(np.random.default_rng(0).integers(0, 1000, (64, 32)))

    def slice_backward():
        x[1:3, ::2].sum().backward()

    def embedding_backward():
        emb(ids).sum().backward()

    return dict(zip(REPEATS, (lambda: x[1:3, ::2], slice_backward, embedding_backward)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    from ab_trees import load
    from common import set_threads

    set_threads(1)
    for src, alias in ((args.before, "cr_before"), (args.after, "cr_after")):
        src = os.path.abspath(src)
        sys.path.insert(0, src)
        importlib.import_module("chainrule")  # then load() moves it to ``alias``
        sys.path.remove(src)
        load(src, alias, [])
    trees = {"A": cases(sys.modules["cr_before"]), "B": cases(sys.modules["cr_after"])}
    for calls in trees.values():  # warm up
        for f in calls.values():
            for _ in range(20):
                f()
    res = {(v, n): [] for v in "AB" for n in REPEATS}
    for r in range(args.rounds):
        for v in ("AB" if r % 2 == 0 else "BA"):
            for n, k in REPEATS.items():
                f = trees[v][n]
                t = time.perf_counter()
                for _ in range(k):
                    f()
                res[(v, n)].append((time.perf_counter() - t) / k * 1e6)
    print(f"# 1 thread, {args.rounds} rounds, A/B interleaved in one process; load "
          f"{open('/proc/loadavg').read().split()[0]}")
    print("| call | before (us, median) | after (us, median) | after / before |")
    print("| --- | --- | --- | --- |")
    for n in REPEATS:
        a, b = statistics.median(res[("A", n)]), statistics.median(res[("B", n)])
        print(f"| {n} | {a:.2f} | {b:.2f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
