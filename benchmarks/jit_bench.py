"""chainrule.jit against chainrule eager and PyTorch eager, in one process, rounds interleaved.

    python benchmarks/jit_bench.py                 # tiny-op chain, MLP step, LeNet-free
    python benchmarks/jit_bench.py --threads 1
    python benchmarks/jit_bench.py --compile       # also the transformer step's compile times

The workloads are bench.py's (the tiny-op chain of 200 ops with backward, here returning the
gradient so that it is not dead code; the 784-512-512-10 MLP step with SGD) and
transformer_bench.py's (the character LM step with Adam). Each library's step is warmed up
(for the jit: traced and compiled), then the libraries take turns, round by round, so drift on
a shared machine hits all alike; medians and ratios to torch are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import bench
from common import set_threads, versions


def _tiny(x0):
    """bench.py's tiny-op chain, returning the gradient it computes (bench.py's step throws it
    away, and the jit's dead-code elimination would then drop the whole step)."""

    def step():
        x = x0
        for i in range(bench.TINY_N):
            k = i % 3
            x = x * 1.1 if k == 0 else (x + 0.1 if k == 1 else x.tanh())
        x.sum().backward()
        g = x0.grad
        x0.grad = None
        return g

    return step


def _tiny_factory(lib):
    def make():
        if lib == "torch":
            import torch

            return _tiny(torch.randn(16, requires_grad=True))
        import chainrule as cr

        return _tiny(cr.randn(16, requires_grad=True))

    return make


FACTORIES = {"tiny": {"chainrule": _tiny_factory("chainrule"), "torch": _tiny_factory("torch")}}


def _steps(name):
    steps = {}
    factories = FACTORIES.get(name) or bench.WORKLOADS[name]
    for lib, factory in factories.items():
        if lib == "numpy":
            continue
        try:
            steps[lib] = factory()
        except ImportError as e:
            print(f"  [{name}] {lib} skipped: {e}", file=sys.stderr)
            continue
        if lib == "chainrule":
            import chainrule as cr

            steps["chainrule-jit"] = cr.jit(factories["chainrule"](), fullgraph=True)
    return steps


def run(names, rounds, reps, warmup):
    rows = []
    for name in names:
        steps = _steps(name)
        for s in steps.values():
            for _ in range(warmup):
                s()
        times = {lib: [] for lib in steps}
        for _ in range(rounds):
            for lib, s in steps.items():
                times[lib].extend(bench._time(s, reps))
        med = {lib: statistics.median(t) for lib, t in times.items()}
        base = med.get("torch")
        for lib, m in med.items():
            rows.append((name, lib, m * 1e3, f"{m / base:.2f}x" if base else "-"))
    return rows


def compile_times():
    """The transformer step under the jit: first call (trace + compile), second call (the
    optimiser state now exists: a second trace), then the median replay against eager."""
    import transformer_bench as tb

    import chainrule as cr

    f = cr.jit(tb.make_chainrule_step(from_torch=False), fullgraph=True)
    out = {}
    for label in ("first call", "second call"):
        t0 = time.perf_counter()
        f()
        out[label] = time.perf_counter() - t0
    eager = tb.make_chainrule_step(from_torch=False)
    eager()
    eager()
    rep, eag = [], []
    for _ in range(5):
        rep += bench._time(f, 3)
        eag += bench._time(eager, 3)
    out["replay (median)"] = statistics.median(rep)
    out["eager (median)"] = statistics.median(eag)
    return out, f.explain()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=["tiny", "mlp"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="transformer compile times")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    print(versions())
    print(f"threads: {args.threads or 'default'}; rounds {args.rounds} x reps {args.reps}")
    print(f"{'workload':10} {'library':14} {'ms/step':>10} {'vs torch':>9}")
    for name, lib, ms, ratio in run(args.names, args.rounds, args.reps, warmup=3):
        print(f"{name:10} {lib:14} {ms:10.3f} {ratio:>9}")
    if args.compile:
        times, explain = compile_times()
        for k, v in times.items():
            print(f"transformer {k}: {v * 1e3:.1f} ms")
        print(explain)


if __name__ == "__main__":
    main()
