"""chainrule.jit against chainrule eager and PyTorch eager, in one process, rounds interleaved.

    python benchmarks/jit_bench.py                 # tiny-op chain and MLP step
    python benchmarks/jit_bench.py lstm-jit transformer-jit --rounds 3 --reps 2
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


def _register():
    """bench.py's registry, extended: a chainrule-jit column for the MLP step, and the
    gradient-returning tiny chain as "tiny-grad" (eager, jit, torch)."""
    import chainrule as cr

    def jitted(factory):
        return lambda: cr.jit(factory(), fullgraph=True)

    tiny = {"chainrule": _tiny_factory("chainrule"), "torch": _tiny_factory("torch")}
    tiny["chainrule-jit"] = jitted(tiny["chainrule"])
    bench.WORKLOADS["tiny-grad"] = tiny
    mlp = {k: v for k, v in bench.WORKLOADS["mlp"].items() if k != "numpy"}
    mlp["chainrule-jit"] = jitted(mlp["chainrule"])
    bench.WORKLOADS["mlp-jit"] = mlp
    import lstm_bench
    import transformer_bench

    bench.WORKLOADS["lstm-jit"] = {"chainrule": lstm_bench._chainrule,
                                   "chainrule-jit": jitted(lstm_bench._chainrule),
                                   "torch": lstm_bench._torch}
    tb = {"chainrule": lambda: transformer_bench.make_chainrule_step(from_torch=False),
          "torch": transformer_bench.make_torch_step}
    tb["chainrule-jit"] = jitted(tb["chainrule"])
    bench.WORKLOADS["transformer-jit"] = tb


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
    ap.add_argument("names", nargs="*", default=["tiny-grad", "mlp-jit"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="transformer compile times")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    print(versions())
    print(f"threads: {args.threads or 'default'}; rounds {args.rounds} x reps {args.reps}")
    print(f"{'workload':10} {'library':14} {'ms/step':>10} {'vs torch':>9}")
    _register()
    for name, lib, ms, ratio in bench.run(args.names, args.rounds, args.reps):
        print(f"{name:10} {lib:14} {ms:10.3f} {ratio:>9}")
    if args.compile:
        times, explain = compile_times()
        for k, v in times.items():
            print(f"transformer {k}: {v * 1e3:.1f} ms")
        print(explain)


if __name__ == "__main__":
    main()
