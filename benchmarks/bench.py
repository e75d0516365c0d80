"""Side-by-side benchmarks: chainrule vs PyTorch eager (where installed) vs hand-written NumPy.

Each workload is defined once per library as a zero-argument ``step`` callable built by a
factory; the runner interleaves the libraries round by round (so drift on a noisy machine hits
all of them alike) and prints medians and ratios to PyTorch.

    python benchmarks/bench.py                 # all workloads
    python benchmarks/bench.py tiny mlp        # some
    python benchmarks/bench.py --threads 1     # one BLAS/torch thread

Workloads are registered in WORKLOADS: name -> {library: factory}.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from common import set_threads, versions

WORKLOADS: dict[str, dict] = {}


def workload(name: str, lib: str):
    """Register ``factory() -> step`` as workload ``name`` for library ``lib``."""

    def deco(factory):
        WORKLOADS.setdefault(name, {})[lib] = factory
        return factory

    return deco


# ---------------------------------------------------------------- tiny-op chain
TINY_N = 200


def _tiny_chain(x0):
    """The tiny-op chain on a leaf ``x0`` of either library (the same code for both)."""

    def step():
        x = x0
        for i in range(TINY_N):
            k = i % 3
            x = x * 1.1 if k == 0 else (x + 0.1 if k == 1 else x.tanh())
        x.sum().backward()
        x0.grad = None

    return step


@workload("tiny", "chainrule")
def _tiny_cr():
    import chainrule as cr

    return _tiny_chain(cr.randn(16, requires_grad=True))


@workload("tiny", "torch")
def _tiny_torch():
    import torch

    return _tiny_chain(torch.randn(16, requires_grad=True))


@workload("tiny", "numpy")
def _tiny_np():
    import numpy as np

    x0 = np.random.default_rng(0).standard_normal(16).astype(np.float32)

    def step():
        x = x0
        saved = []
        for i in range(TINY_N):
            k = i % 3
            if k == 0:
                x = x * np.float32(1.1)
            elif k == 1:
                x = x + np.float32(0.1)
            else:
                x = np.tanh(x)
                saved.append(x)
        g = np.ones_like(x)
        j = len(saved)
        for i in reversed(range(TINY_N)):
            k = i % 3
            if k == 0:
                g = g * np.float32(1.1)
            elif k == 2:
                j -= 1
                y = saved[j]
                g = g * (1 - y * y)
        return g

    return step


# ---------------------------------------------------------------- MLP step
MLP_SIZES = (784, 512, 512, 10)
MLP_BATCH = 128


def _mlp_data(seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((MLP_BATCH, MLP_SIZES[0])).astype(np.float32)
    y = rng.integers(0, MLP_SIZES[-1], MLP_BATCH)
    ws = []
    for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        bound = 1 / a ** 0.5
        ws.append((rng.uniform(-bound, bound, (b, a)).astype(np.float32),
                   rng.uniform(-bound, bound, b).astype(np.float32)))
    return x, y, ws


@workload("mlp", "chainrule")
def _mlp_cr():
    import chainrule as cr
    import chainrule.nn.functional as F

    x, y, ws = _mlp_data()
    X, Y = cr.from_numpy(x), cr.from_numpy(y)
    params = [(cr.from_numpy(w).requires_grad_(), cr.from_numpy(b).requires_grad_())
              for w, b in ws]
    flat = [p for wb in params for p in wb]
    lr = 0.01

    def step():
        h = X
        for i, (w, b) in enumerate(params):
            h = F.linear(h, w, b)
            if i < len(params) - 1:
                h = h.relu()
        loss = F.cross_entropy(h, Y)
        loss.backward()
        with cr.no_grad():
            for p in flat:
                p._data -= lr * p._grad._data
                p._bump()
                p._grad = None
        return loss

    return step


@workload("mlp", "torch")
def _mlp_torch():
    import torch
    import torch.nn.functional as F

    x, y, ws = _mlp_data()
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    params = [(torch.from_numpy(w.copy()).requires_grad_(),
               torch.from_numpy(b.copy()).requires_grad_()) for w, b in ws]
    flat = [p for wb in params for p in wb]
    lr = 0.01

    def step():
        h = X
        for i, (w, b) in enumerate(params):
            h = F.linear(h, w, b)
            if i < len(params) - 1:
                h = h.relu()
        loss = F.cross_entropy(h, Y)
        loss.backward()
        with torch.no_grad():
            for p in flat:
                p.sub_(lr * p.grad)
                p.grad = None
        return loss

    return step


@workload("mlp", "numpy")
def _mlp_np():
    import numpy as np

    x, y, ws = _mlp_data()
    ws = [(w.copy(), b.copy()) for w, b in ws]
    lr = np.float32(0.01)
    n = x.shape[0]

    def step():
        hs = [x]
        h = x
        for i, (w, b) in enumerate(ws):
            h = h @ w.T + b
            if i < len(ws) - 1:
                h = np.maximum(h, 0)
            hs.append(h)
        z = h - h.max(1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(1, keepdims=True)
        g = p
        g[np.arange(n), y] -= 1
        g /= n
        for i in reversed(range(len(ws))):
            w, b = ws[i]
            a = hs[i]
            gw = g.T @ a
            gb = g.sum(0)
            if i:
                g = (g @ w) * (a > 0)
            w -= lr * gw
            b -= lr * gb

    return step


# ---------------------------------------------------------------- runner
def _time(step, reps):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        t.append(time.perf_counter() - t0)
    return t


def run(names, rounds=15, reps=10, warmup=3):
    rows = []
    for name in names:
        libs = WORKLOADS[name]
        steps = {}
        for lib, factory in libs.items():
            try:
                steps[lib] = factory()
            except ImportError as e:
                print(f"  [{name}] {lib} skipped: {e}", file=sys.stderr)
        for s in steps.values():
            for _ in range(warmup):
                s()
        times = {lib: [] for lib in steps}
        for _ in range(rounds):  # interleave libraries round by round
            for lib, s in steps.items():
                times[lib].extend(_time(s, reps))
        med = {lib: statistics.median(t) for lib, t in times.items()}
        base = med.get("torch")
        for lib, m in med.items():
            ratio = f"{m / base:.2f}x" if base else "-"
            rows.append((name, lib, m * 1e3, ratio))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"workloads (default all: {', '.join(WORKLOADS)})")
    ap.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    names = args.names or list(WORKLOADS)
    for n in names:
        if n not in WORKLOADS:
            ap.error(f"unknown workload {n!r}; choose from {', '.join(WORKLOADS)}")
    print(f"# {platform.machine()}, {os.cpu_count()} cores; {versions()}")
    print(f"{'workload':<10} {'library':<10} {'median ms':>10} {'vs torch':>9}")
    for name, lib, ms, ratio in run(names, args.rounds, args.reps):
        print(f"{name:<10} {lib:<10} {ms:>10.3f} {ratio:>9}")


if __name__ == "__main__":
    main()
