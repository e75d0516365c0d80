"""The small experiments of Rumelhart, Hinton & Williams (1986), with their setup.

Setup, as in the paper: logistic (sigmoid) units with biases, squared error summed over all
training cases, one weight update per full sweep through the cases, momentum 0.9
(Delta w(t) = -lr dE/dw + 0.9 Delta w(t-1), which is chainrule.optim.SGD with momentum=0.9 and
dampening 0), weights initialised uniformly in [-r, r].

Convergence (our definition; the paper gives the sweep counts, not a stopping rule in code):
every output of every case is within 0.1 of its 0/1 target.

    python examples/backprop1986.py            # all three, 10 seeds each
    python examples/backprop1986.py xor --seeds 20

Experiments (published figures from the paper):
    xor        2-2-1, lr 0.5, init +-0.3 (assumed: the paper gives no range): about 558 sweeps
    symmetry   6-2-1 on all 64 patterns, lr 0.1, init +-0.3:                     1,425 sweeps
    encoder    8-3-8 auto-association, lr pinned at 0.1, init +-0.3 (no published count; at
               lr 0.5 most seeds stick in a local minimum where patterns share a code)
"""

from __future__ import annotations

import argparse
import itertools
import statistics

import numpy as np

import chainrule as cr
from chainrule import nn, optim

PUBLISHED = {"xor": 558, "symmetry": 1425, "encoder": None}


def _data(name: str):
    if name == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        y = np.array([[0], [1], [1], [0]], dtype=np.float64)
        return x, y, (2, 2, 1), 0.5
    if name == "symmetry":
        x = np.array(list(itertools.product([0, 1], repeat=6)), dtype=np.float64)
        y = np.array([[float((r == r[::-1]).all())] for r in x])
        return x, y, (6, 2, 1), 0.1
    if name == "encoder":
        x = np.eye(8)
        return x, x.copy(), (8, 3, 8), 0.1
    raise ValueError(f"unknown experiment {name!r}")


def run(name: str, seed: int, max_sweeps: int = 10000, init_range: float = 0.3,
        lr: float | None = None):
    """Train one network; return the sweep at which it converged, or None.

    Example:
        >>> run("xor", seed=1) is None or run("xor", seed=1) > 0
        True
    """
    x, y, sizes, default_lr = _data(name)
    lr = default_lr if lr is None else lr
    gen = cr.Generator().manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = nn.Linear(a, b, dtype=cr.float64)
        nn.init.uniform_(lin.weight, -init_range, init_range, generator=gen)
        nn.init.uniform_(lin.bias, -init_range, init_range, generator=gen)
        layers += [lin, nn.Sigmoid()]
    model = nn.Sequential(*layers)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    X, Y = cr.tensor(x), cr.tensor(y)
    for sweep in range(max_sweeps + 1):
        out = model(X)
        if float((out.detach() - Y).abs().max()) < 0.1:
            return sweep  # the weights after `sweep` updates solve every case
        err = ((out - Y) ** 2).sum() * 0.5  # E = 1/2 sum over cases and outputs
        opt.zero_grad()
        err.backward()
        opt.step()
    return None


def summarise(name: str, seeds) -> dict:
    """Sweeps to convergence over ``seeds``: median, range, how many converged."""
    sweeps = [run(name, s) for s in seeds]
    done = [s for s in sweeps if s is not None]
    return {
        "experiment": name, "seeds": len(sweeps), "converged": len(done),
        "median": statistics.median(done) if done else None,
        "min": min(done) if done else None, "max": max(done) if done else None,
        "published": PUBLISHED[name], "sweeps": sweeps,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description="Rumelhart, Hinton & Williams (1986) experiments")
    ap.add_argument("names", nargs="*", default=["xor", "symmetry", "encoder"])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args(argv)
    print(f"{'experiment':<10} {'converged':>9} {'median':>7} {'range':>13} {'published':>9}")
    for name in args.names:
        r = summarise(name, range(args.seeds))
        rng = f"{r['min']}-{r['max']}" if r["converged"] else "-"
        print(f"{name:<10} {r['converged']:>4}/{r['seeds']:<4} {r['median'] or '-':>7} "
              f"{rng:>13} {r['published'] or '-':>9}")


if __name__ == "__main__":
    main()
