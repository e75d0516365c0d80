"""SGD with momentum, Adam, L-BFGS and Hessian-free, measured on two problems.

1. The Rosenbrock function f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 from (-1.2, 1), in float64.
   Hessian-free runs twice: with Gauss-Newton curvature (f as the sum of squares of the
   residuals (1 - x, 10 (y - x^2))) and with the exact Hessian (forward-over-reverse).
2. A deep autoencoder on the bundled digits (1,797 images of 8x8 pixels scaled to [0, 1]):
   64-100-50-25-6-25-50-100-64, eight Linear layers, tanh inside, a sigmoid output, mean
   squared error on the whole set, float32, PyTorch's default initialisation (same seed for
   every optimiser).

For every optimiser the script logs (cost, wall seconds, loss) and prints three tables per
problem: the loss after a given number of gradient evaluations, the loss after a given wall
time, and the cost and time of first reaching given losses. Rosenbrock runs get 2,000 gradient
evaluations (or stop at the minimum); autoencoder runs get ``--seconds`` of optimiser time
each (default 20). A "-" in a table means the run had stopped before that point.

Logged points: SGD and Adam after every step (Rosenbrock) or epoch (autoencoder); HessianFree
after every step (the loss at the accepted point); L-BFGS after every closure call on
Rosenbrock (the lowest loss so far: one ``step()`` runs 20 iterations) and after every
``step()`` of 10 iterations on the autoencoder.

How cost is counted, in gradient evaluations of the full objective:

* one closure call (forward + backward on the full set) = 1; SGD and Adam on the autoencoder
  use mini-batches of 100 (and Adam once more the full set), so one of their steps counts
  100 / 1797;
* one curvature-vector product (Gauss-Newton: a forward pass carrying tangents, the loss's
  Hessian in output space, one backward pass; Hessian: forward-over-reverse) = 2 x (its batch
  / the full set). The script measures the actual ratio of a product's time to a gradient's
  and prints it, so the constant can be checked.

The clock runs only inside the optimisers' steps (the autoencoder's full-set loss for the
mini-batch methods is measured with the clock stopped).

Run (about two minutes on two CPU cores):

    PYTHONPATH=src python examples/second_order.py
    PYTHONPATH=src python examples/second_order.py --seconds 5   # a quick look
    PYTHONPATH=src python examples/second_order.py --only rosenbrock
    PYTHONPATH=src python examples/second_order.py --only autoencoder --act sigmoid

The tables from a run are in docs/second_order.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.data import load_digits

PRODUCT_COST = 2.0  # gradient evaluations per curvature-vector product on the full set


class Log:
    """(cost, seconds, loss) triples; the clock runs only between ``start`` and ``stop``."""

    def __init__(self):
        self.rows: list[tuple[float, float, float]] = []
        self.elapsed = 0.0
        self.converged = False  # stopped because it had converged, not at the budget
        self._t0 = None

    def start(self):
        self._t0 = time.perf_counter()

    def stop(self):
        self.elapsed += time.perf_counter() - self._t0
        self._t0 = None

    def now(self) -> float:
        """Optimiser seconds so far (including a running segment)."""
        if self._t0 is None:
            return self.elapsed
        return self.elapsed + time.perf_counter() - self._t0

    def add(self, cost: float, loss: float):
        self.rows.append((cost, self.now(), loss))

    def at(self, column: int, limit: float) -> float:
        """The loss of the last row whose cost (column 0) or time (column 1) is <= limit;
        nan when the run stopped at its budget before getting that far."""
        if self.rows[-1][column] < limit and not self.converged:
            return math.nan
        best = math.nan
        for row in self.rows:
            if row[column] <= limit * (1 + 1e-9):
                best = row[2]
        return best

    def reach(self, target: float) -> tuple[float, float]:
        """(cost, seconds) of the first row with loss <= target (nan, nan if never)."""
        for c, s, loss in self.rows:
            if loss <= target:
                return c, s
        return math.nan, math.nan


def _hf_cost(opt, products_fraction: float = 1.0) -> float:
    st = opt.state[opt.param_groups[0]["params"][0]]
    return st.get("func_evals", 0) + PRODUCT_COST * products_fraction * \
        st.get("curvature_products", 0)


def _lbfgs_cost(opt) -> float:
    return opt.state[opt.param_groups[0]["params"][0]].get("func_evals", 0)


# ================================================================ Rosenbrock
START = (-1.2, 1.0)


def rosen_residuals(x):
    return cr.stack([1 - x[0], 10 * (x[1] - x[0] ** 2)])


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def run_rosenbrock(name: str, budget: float, seconds: float, **hp) -> Log:
    """Minimise Rosenbrock with optimiser ``name`` for ``budget`` gradient evaluations."""
    x = cr.tensor(START, dtype=cr.float64, requires_grad=True)
    log = Log()
    log.add(0, float(rosenbrock(x)))

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    if name in ("sgd", "adam"):
        opt = optim.SGD([x], lr=hp["lr"], momentum=0.9) if name == "sgd" else \
            optim.Adam([x], lr=hp["lr"])
        for k in range(1, int(budget) + 1):
            log.start()
            closure()
            opt.step()
            log.stop()
            log.add(k, float(rosenbrock(x.detach())))
            if log.elapsed > seconds:
                break
        log.converged = log.rows[-1][2] < 1e-12  # at the minimum to working precision
    elif name == "lbfgs":
        # one step() runs up to 20 iterations: log every closure call instead, with the
        # lowest loss so far (the iterate L-BFGS holds; line-search trials can be higher)
        opt = optim.LBFGS([x], max_iter=20, history_size=10, line_search_fn="strong_wolfe",
                          tolerance_grad=1e-14, tolerance_change=1e-16)
        best = [log.rows[0][2], 0]

        def closure():  # the logging closure
            opt.zero_grad()
            loss = rosenbrock(x)
            loss.backward()
            best[0] = min(best[0], float(loss))
            best[1] += 1
            log.add(best[1], best[0])
            return loss

        while best[1] < budget and log.elapsed < seconds and best[0] > 0:
            n = best[1]
            log.start()
            opt.step(closure)
            log.stop()
            if best[1] == n + 1:  # converged: only the initial evaluation ran
                log.converged = True
                break
        log.converged |= best[0] == 0
    else:
        curvature = "gauss-newton" if name == "hf-gn" else "hessian"
        opt = optim.HessianFree([x], curvature=curvature, damping=hp.get("damping", 1.0),
                                tolerance_grad=1e-14)
        if curvature == "gauss-newton":
            def curvature_fn():
                return rosen_residuals(x), lambda r: (r ** 2).sum()
        else:
            def curvature_fn():
                return rosenbrock(x)
        k = 1
        while _hf_cost(opt) < budget and log.elapsed < seconds:
            log.start()
            opt.step(closure, curvature_fn)
            log.stop()
            log.add(_hf_cost(opt), float(rosenbrock(x.detach())))
            if float(rosenbrock(x.detach())) == 0.0 or opt.state[x].get("n_iter", 0) < k:
                log.converged = True  # at the minimum, or the gradient vanished: no step
                break
            k += 1
    return log


# SGD and Adam learning rates: the best final loss over the grids SGD {1e-4, 3e-4, 1e-3,
# 2e-3, 3e-3, 4e-3} (4e-3 diverges) and Adam {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3}
ROSEN_RUNS = [("sgd", "SGD momentum 0.9, lr 3e-3", {"lr": 3e-3}),
              ("adam", "Adam, lr 0.1", {"lr": 0.1}),
              ("lbfgs", "L-BFGS, strong Wolfe", {}),
              ("hf-gn", "HessianFree, Gauss-Newton", {"damping": 1.0}),
              ("hf-h", "HessianFree, Hessian", {"damping": 1.0})]


# ================================================================ autoencoder
SIZES = (64, 100, 50, 25, 6, 25, 50, 100, 64)


def make_autoencoder(seed: int = 0, act: str = "tanh") -> nn.Sequential:
    """The 8-Linear-layer autoencoder (``act`` inside, sigmoid output), seeded."""
    cr.manual_seed(seed)
    hidden = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[act]
    layers: list = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        layers.append(hidden() if i < len(SIZES) - 2 else nn.Sigmoid())
    return nn.Sequential(*layers)


def run_autoencoder(name: str, budget: float, seconds: float, X=None, seed: int = 0,
                    act: str = "tanh", **hp) -> Log:
    """Train the autoencoder with optimiser ``name`` for ``budget`` gradient evaluations or
    ``seconds`` of optimiser time, whichever comes first."""
    if X is None:
        X, _ = load_digits()
    n = X.shape[0]
    model = make_autoencoder(seed, act)
    params = list(model.parameters())
    log = Log()

    def full_loss() -> float:
        with cr.no_grad():
            return float(F.mse_loss(model(X), X))

    log.add(0, full_loss())

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(model(X), X)
        loss.backward()
        return loss

    if name in ("sgd", "adam", "adam-full"):
        batch = hp.get("batch", 100)
        opt = optim.SGD(params, lr=hp["lr"], momentum=0.9) if name == "sgd" else \
            optim.Adam(params, lr=hp["lr"])
        g = cr.Generator().manual_seed(seed)
        cost = 0.0
        epoch = 0
        log_every = 1 if batch < n else 5  # the full-set loss costs a forward pass
        while cost < budget and log.elapsed < seconds:
            perm = cr.randperm(n, generator=g)
            for k in range(0, n - batch + 1, batch):
                xb = X[perm[k:k + batch]]
                log.start()
                opt.zero_grad()
                F.mse_loss(model(xb), xb).backward()
                opt.step()
                log.stop()
                cost += batch / n
            epoch += 1
            if epoch % log_every == 0:
                log.add(cost, full_loss())  # clock stopped
        if log.rows[-1][0] != cost:
            log.add(cost, full_loss())
    elif name == "lbfgs":
        opt = optim.LBFGS(params, max_iter=10, history_size=hp.get("history_size", 20),
                          line_search_fn="strong_wolfe")
        while _lbfgs_cost(opt) < budget and log.elapsed < seconds:
            log.start()
            opt.step(closure)
            log.stop()
            log.add(_lbfgs_cost(opt), full_loss())
    else:
        parts = hp.get("curvature_parts", 4)  # curvature on 1/parts of the set, cycled
        size = n // parts
        opt = optim.HessianFree(params, damping=hp.get("damping", 1.0),
                                max_cg_iters=hp.get("max_cg_iters", 250))
        k = 0
        while _hf_cost(opt, size / n) < budget and log.elapsed < seconds:
            xc = X[(k % parts) * size:(k % parts + 1) * size]
            k += 1

            def curvature_fn(xc=xc):
                return model(xc), lambda z: F.mse_loss(z, xc)

            log.start()
            opt.step(closure, curvature_fn)
            log.stop()
            st = opt.state[params[0]]
            loss = st.get("loss")
            log.add(_hf_cost(opt, size / n), loss if loss is not None else full_loss())
    return log


# Hyperparameters: the best loss after 10 s (SGD, Adam) or 20 s (HessianFree) over the grids
# SGD lr {0.03, 0.1, 0.3, 1, 3, 10, 30}, Adam lr {3e-4, 1e-3, 3e-3, 1e-2} (mini-batches of
# 100; full set: {1e-2, 3e-2}), HessianFree initial damping {1, 1e-2, 1e-3, 1e-4}, curvature
# batch {1/2, 1/4, 1/8} and max_cg_iters {50, 100, 250} (differences within the timing noise)
AE_RUNS = [("sgd", "SGD momentum 0.9, lr 3, batch 100", {"lr": 3.0}),
           ("adam", "Adam, lr 1e-2, batch 100", {"lr": 1e-2}),
           ("adam-full", "Adam, lr 1e-2, full set", {"lr": 1e-2, "batch": 1797}),
           ("lbfgs", "L-BFGS, strong Wolfe, full set", {}),
           ("hf", "HessianFree, Gauss-Newton, curvature on 1/4", {"damping": 1e-3})]


def product_ratio(X, reps: int = 7) -> tuple[float, float]:
    """Median time of one full-set Gauss-Newton product over one full-set gradient."""
    model = make_autoencoder(0)
    params = list(model.parameters())
    opt = optim.HessianFree(params)
    vs = [cr.randn(*p.shape) for p in params]

    def grad():
        opt.zero_grad()
        F.mse_loss(model(X), X).backward()

    def product():
        opt.curvature_vector_product(lambda: (model(X), lambda z: F.mse_loss(z, X)), vs)

    tg, tp = [], []
    for _ in range(reps):
        t = time.perf_counter()
        grad()
        tg.append(time.perf_counter() - t)
        t = time.perf_counter()
        product()
        tp.append(time.perf_counter() - t)
    return statistics.median(tg), statistics.median(tp)


# ================================================================ tables
def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3g}"


def print_tables(title: str, runs, logs: dict, costs, times, targets, out=sys.stdout):
    p = out.write
    p(f"\n### {title}: loss after N gradient evaluations\n\n")
    p("| optimiser | " + " | ".join(f"{c:g}" for c in costs) + " |\n")
    p("|---|" + "---:|" * len(costs) + "\n")
    for key, label, _ in runs:
        p(f"| {label} | " + " | ".join(_fmt(logs[key].at(0, c)) for c in costs) + " |\n")
    p(f"\n### {title}: loss after t seconds of optimiser time\n\n")
    p("| optimiser | " + " | ".join(f"{t:g} s" for t in times) + " |\n")
    p("|---|" + "---:|" * len(times) + "\n")
    for key, label, _ in runs:
        p(f"| {label} | " + " | ".join(_fmt(logs[key].at(1, t)) for t in times) + " |\n")
    p(f"\n### {title}: first reaching a loss (gradient evaluations / seconds)\n\n")
    p("| optimiser | " + " | ".join(f"<= {t:g}" for t in targets) + " | final loss |\n")
    p("|---|" + "---:|" * (len(targets) + 1) + "\n")
    for key, label, _ in runs:
        cells = []
        for t in targets:
            c, s = logs[key].reach(t)
            cells.append("-" if math.isnan(c) else f"{c:.0f} / {s:.2f} s")
        last = logs[key].rows[-1]
        cells.append(f"{last[2]:.3g} ({last[0]:.0f} evals, {last[1]:.1f} s)")
        p(f"| {label} | " + " | ".join(cells) + " |\n")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="optimiser time per autoencoder run (default 20)")
    ap.add_argument("--budget", type=float, default=10000,
                    help="gradient evaluations per autoencoder run at most (default 10000)")
    ap.add_argument("--only", choices=["rosenbrock", "autoencoder"], default=None)
    ap.add_argument("--act", choices=["tanh", "sigmoid"], default="tanh",
                    help="the autoencoder's hidden activation (default tanh)")
    args = ap.parse_args(argv)
    logs: dict = {}
    if args.only != "autoencoder":
        rosen = {key: run_rosenbrock(key, 2000, 20.0, **hp) for key, _, hp in ROSEN_RUNS}
        logs["rosenbrock"] = rosen
        print_tables("Rosenbrock", ROSEN_RUNS, rosen, costs=(10, 30, 100, 300, 1000, 2000),
                     times=(0.01, 0.03, 0.1, 0.3, 1), targets=(1e-2, 1e-6, 1e-12))
    if args.only != "rosenbrock":
        X, _ = load_digits()
        tg, tp = product_ratio(X)
        print(f"\nautoencoder: full-set gradient {tg * 1e3:.1f} ms, Gauss-Newton product "
              f"{tp * 1e3:.1f} ms (ratio {tp / tg:.2f}; counted as {PRODUCT_COST:g})")
        ae = {key: run_autoencoder(key, args.budget, args.seconds, X=X, act=args.act, **hp)
              for key, _, hp in AE_RUNS}
        logs["autoencoder"] = ae
        s = args.seconds
        print_tables(f"Autoencoder ({args.act})", AE_RUNS, ae, costs=(10, 30, 100, 300, 600),
                     times=tuple(round(s * f, 2) for f in (0.05, 0.15, 0.5, 1.0)),
                     targets=(0.05, 0.03, 0.02, 0.015, 0.01))
    return logs


if __name__ == "__main__":
    main()
