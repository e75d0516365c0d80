"""A/B of two source trees of chainrule (before and after a change) in ONE process.

Both trees are imported in the same process (the first is renamed ``cr_before``, the second
``cr_after`` in ``sys.modules``, lazy relative imports included), each builds the workloads
at one thread, and their steps take turns in blocks, the order alternating every round, so
that drift on a shared machine hits both alike. Prints the medians and their ratio. Run it
twice with the trees swapped (and once with a tree against a copy of itself) to see the
order bias, which on a busy machine is a few percent.

    git archive REV src | tar -x -C /tmp/before
    python benchmarks/ab_trees.py /tmp/before/src src --workloads tiny mlp lenet transformer
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load(src: str, alias: str, names) -> dict:
    """Import chainrule from ``src``, build the workloads' steps, then move its modules to
    ``alias`` in sys.modules, so that the next tree imports fresh."""
    import libs
    import workloads

    sys.path.insert(0, src)
    steps = {w: workloads.build(w, libs.load("chainrule", 1))[0]["main"] for w in names}
    mods = {k: m for k, m in sys.modules.items() if k == "chainrule" or k.startswith("chainrule.")}
    if not mods["chainrule"].__file__.startswith(os.path.abspath(src)):
        raise SystemExit(f"{src}: imported chainrule from {mods['chainrule'].__file__}")
    for k, m in mods.items():
        del sys.modules[k]
        sys.modules[alias + k[len("chainrule"):]] = m
        pkg = getattr(m, "__package__", None)
        if pkg and (pkg == "chainrule" or pkg.startswith("chainrule.")):
            m.__package__ = alias + pkg[len("chainrule"):]  # lazy imports stay in this tree
    sys.path.remove(src)
    return steps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--workloads", nargs="+", default=["mlp", "lenet", "transformer"])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--block", type=int, default=5)
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    from common import set_threads

    set_threads(1)
    trees = {"A": load(os.path.abspath(args.before), "cr_before", args.workloads),
             "B": load(os.path.abspath(args.after), "cr_after", args.workloads)}
    for w in args.workloads:  # warm up
        for v in "AB":
            for _ in range(3):
                trees[v][w]()
    res = {(v, w): [] for v in "AB" for w in args.workloads}
    for r in range(args.rounds):
        for w in args.workloads:
            for v in ("AB" if r % 2 == 0 else "BA"):
                step = trees[v][w]
                t = time.perf_counter()
                for _ in range(args.block):
                    step()
                res[(v, w)].append((time.perf_counter() - t) / args.block * 1e3)
    leak = [k for k in sys.modules if k == "chainrule" or k.startswith("chainrule.")]
    if leak:
        raise SystemExit(f"a tree imported chainrule modules by absolute name: {leak[:5]}")
    print(f"# 1 thread, {args.rounds} rounds of {args.block}-step blocks, A/B interleaved in "
          f"one process; load {open('/proc/loadavg').read().split()[0]}")
    print("| workload | before (ms, median) | after (ms, median) | after / before |")
    print("| --- | --- | --- | --- |")
    for w in args.workloads:
        a, b = statistics.median(res[("A", w)]), statistics.median(res[("B", w)])
        print(f"| {w} | {a:.2f} | {b:.2f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
