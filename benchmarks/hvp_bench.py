"""Hessian-vector and Jacobian-vector products of the MLP benchmark's loss, side by side.

The network, data and loss are the ``mlp`` workload of ``bench.py`` (784-512-512-10, ReLU,
cross-entropy, batch 128, float32); every product is taken with respect to all six parameter
tensors along a fixed random direction. Timed in one process, one call of each in turn,
``rounds x reps`` times (so that load from other processes hits all of them alike), and the
medians reported; before timing, every product is checked against the others (chainrule's
four Hessian products, the two Gauss-Newton ones, torch's and the hand-written one):

    chainrule  forward       the loss, no gradient recorded
    chainrule  grad          forward + backward (the gradient of the loss)
    chainrule  jvp           chainrule.func.jvp: true forward mode, one pass
    chainrule  hvp-fwd       chainrule.func.hvp: forward-over-reverse (jvp of grad)
    chainrule  hvp-rev       double backward: grad of <grad, v> (create_graph=True)
    chainrule  hf-h-fwd      HessianFree.curvature_vector_product, Hessian, jvp_mode forward
    chainrule  hf-h-rev      the same, jvp_mode reverse (double backward)
    chainrule  hf-gn-fwd     Gauss-Newton product G v = J^T H_L J v, forward-mode J v
    chainrule  hf-gn-rev     Gauss-Newton product, J v by the double-vjp trick
    torch      forward / grad / jvp (torch.func.jvp)
    torch      hvp-rev       torch.autograd.grad twice (double backward)
    torch      hvp-fwd       torch.func.jvp(torch.func.grad(f)) (forward-over-reverse)
    numpy      hvp           hand-written forward-over-reverse (the floor)

    python benchmarks/hvp_bench.py                # default threads
    python benchmarks/hvp_bench.py --threads 1    # one BLAS / torch thread

It prints the medians, then the ratios the issue sets targets for.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from bench import MLP_SIZES, _mlp_data
from common import set_threads, versions

DIRECTION_SEED = 1


def _direction(ws):
    import numpy as np

    rng = np.random.default_rng(DIRECTION_SEED)
    return [rng.standard_normal(a.shape).astype(np.float32) for wb in ws for a in wb]


# ---------------------------------------------------------------- chainrule
def chainrule_steps() -> dict:
    import chainrule as cr
    import chainrule.nn.functional as F
    from chainrule import func
    from chainrule.autograd import grad as cr_grad
    from chainrule.optim import HessianFree

    x, y, ws = _mlp_data()
    X, Y = cr.from_numpy(x), cr.from_numpy(y)
    params = [cr.from_numpy(a.copy()).requires_grad_() for wb in ws for a in wb]
    vs = [cr.from_numpy(v) for v in _direction(ws)]
    nl = len(MLP_SIZES) - 1

    def logits(*ps):
        h = X
        for i in range(nl):
            h = F.linear(h, ps[2 * i], ps[2 * i + 1])
            if i < nl - 1:
                h = h.relu()
        return h

    def loss(*ps):
        return F.cross_entropy(logits(*ps), Y)

    def forward():
        with cr.no_grad():
            return loss(*params)

    def grad():
        out = loss(*params)
        return cr_grad(out, params)

    primals = tuple(p.detach() for p in params)  # as torch.func gets them

    def jvp():
        return func.jvp(loss, primals, tuple(vs))

    def hvp_fwd():
        return func.hvp(loss, primals, tuple(vs))

    def hvp_rev():
        gs = cr_grad(loss(*params), params, create_graph=True)
        inner = sum((g * v).sum() for g, v in zip(gs, vs))
        return cr_grad(inner, params)

    steps = {"forward": forward, "grad": grad, "jvp": jvp, "hvp-fwd": hvp_fwd,
             "hvp-rev": hvp_rev}
    for curvature, tag in (("hessian", "h"), ("gauss-newton", "gn")):
        for mode, mtag in (("forward", "fwd"), ("reverse", "rev")):
            opt = HessianFree(params, curvature=curvature, jvp_mode=mode)
            if curvature == "hessian":
                def cfn():
                    return loss(*params)
            else:
                def cfn():
                    return logits(*params), lambda z: F.cross_entropy(z, Y)
            steps[f"hf-{tag}-{mtag}"] = (lambda o=opt, c=cfn: o.curvature_vector_product(c, vs))
    return steps


def check_chainrule(steps: dict) -> None:
    """All the Hessian products agree with each other (and the GN ones with each other)."""
    import numpy as np

    def flat(ts):
        return np.concatenate([np.asarray(t.tolist(), dtype=np.float64).ravel() for t in ts])

    ref = flat(steps["hvp-rev"]())
    scale = np.abs(ref).max()
    for name in ("hvp-fwd", "hf-h-fwd", "hf-h-rev"):
        err = np.abs(flat(steps[name]()) - ref).max() / scale
        assert err < 1e-4, f"{name} differs from hvp-rev by {err:.2e} (relative)"
    gn = flat(steps["hf-gn-fwd"]())
    err = np.abs(flat(steps["hf-gn-rev"]()) - gn).max() / np.abs(gn).max()
    assert err < 1e-4, f"hf-gn-rev differs from hf-gn-fwd by {err:.2e} (relative)"


def check_peers(steps: dict) -> None:
    """chainrule's Hessian-vector product agrees with the hand-written one and torch's."""
    import numpy as np

    def flat(ts):
        return np.concatenate([np.asarray(t.tolist() if hasattr(t, "tolist") else t,
                                          dtype=np.float64).ravel() for t in ts])

    ref = flat(steps[("chainrule", "hvp-fwd")]())
    for key in (("numpy", "hvp"), ("torch", "hvp-fwd"), ("torch", "hvp-rev")):
        if key in steps:
            err = np.abs(flat(steps[key]()) - ref).max() / np.abs(ref).max()
            assert err < 1e-4, f"{key} differs from chainrule's hvp by {err:.2e} (relative)"


# ---------------------------------------------------------------- torch
def torch_steps() -> dict:
    import torch
    import torch.nn.functional as F

    x, y, ws = _mlp_data()
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    params = [torch.from_numpy(a.copy()).requires_grad_() for wb in ws for a in wb]
    vs = [torch.from_numpy(v) for v in _direction(ws)]
    nl = len(MLP_SIZES) - 1

    def loss(*ps):
        h = X
        for i in range(nl):
            h = F.linear(h, ps[2 * i], ps[2 * i + 1])
            if i < nl - 1:
                h = h.relu()
        return F.cross_entropy(h, Y)

    def forward():
        with torch.no_grad():
            return loss(*params)

    def grad():
        return torch.autograd.grad(loss(*params), params)

    def jvp():
        return torch.func.jvp(loss, tuple(p.detach() for p in params), tuple(vs))

    def hvp_rev():
        gs = torch.autograd.grad(loss(*params), params, create_graph=True)
        inner = sum((g * v).sum() for g, v in zip(gs, vs))
        return torch.autograd.grad(inner, params)

    g_all = torch.func.grad(loss, argnums=tuple(range(len(params))))
    primals = tuple(p.detach() for p in params)

    def hvp_fwd():
        return torch.func.jvp(g_all, primals, tuple(vs))[1]

    return {"forward": forward, "grad": grad, "jvp": jvp, "hvp-rev": hvp_rev,
            "hvp-fwd": hvp_fwd}


# ---------------------------------------------------------------- numpy (hand-written)
def numpy_steps() -> dict:
    import numpy as np

    x, y, ws = _mlp_data()
    W = [w for w, _ in ws]
    vs = _direction(ws)
    dW, db = vs[0::2], vs[1::2]
    b = [bb for _, bb in ws]
    n = x.shape[0]
    onehot = np.zeros((n, MLP_SIZES[-1]), np.float32)
    onehot[np.arange(n), y] = 1

    def hvp():
        # forward with tangents (R-op)
        hs, dhs, masks = [x], [None], []
        h, dh = x, None
        for i in range(3):
            z = h @ W[i].T + b[i]
            dz = h @ dW[i].T + db[i]
            if dh is not None:
                dz += dh @ W[i].T
            if i < 2:
                m = z > 0
                h, dh = z * m, dz * m
                masks.append(m)
                hs.append(h)
                dhs.append(dh)
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        dg = p * (dz - (p * dz).sum(1, keepdims=True)) / n
        out = [None] * 6
        for i in (2, 1, 0):  # backward with tangents
            a, da = hs[i], dhs[i]
            hw = dg.T @ a
            if da is not None:
                hw += g.T @ da
            out[2 * i], out[2 * i + 1] = hw, dg.sum(0)
            if i:
                gh = g @ W[i]
                dgh = dg @ W[i] + g @ dW[i]
                g, dg = gh * masks[i - 1], dgh * masks[i - 1]
        return out

    return {"hvp": hvp}


# ---------------------------------------------------------------- runner
def _time(step, reps):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        t.append(time.perf_counter() - t0)
    return t


def run(rounds: int, reps: int, warmup: int = 3) -> dict:
    libs = {"chainrule": chainrule_steps}
    try:
        import torch  # noqa: F401

        libs["torch"] = torch_steps
    except ImportError:
        print("  torch not installed: its columns are skipped", file=sys.stderr)
    libs["numpy"] = numpy_steps
    steps = {(lib, name): s for lib, make in libs.items() for name, s in make().items()}
    check_chainrule({name: s for (lib, name), s in steps.items() if lib == "chainrule"})
    check_peers(steps)
    for s in steps.values():
        for _ in range(warmup):
            s()
    times = {k: [] for k in steps}
    for _ in range(rounds * reps):  # interleave call by call: load changes hit all alike
        for k, s in steps.items():
            times[k].extend(_time(s, 1))
    return {k: statistics.median(v) for k, v in times.items()}


def report(med: dict) -> list[tuple[str, float, float]]:
    """Print the medians and the target ratios; returns (label, ratio, target) rows."""
    print(f"{'library':<10} {'product':<10} {'median ms':>10}")
    for (lib, name), m in med.items():
        print(f"{lib:<10} {name:<10} {m * 1e3:>10.3f}")
    c = {n: m for (lib, n), m in med.items() if lib == "chainrule"}
    t = {n: m for (lib, n), m in med.items() if lib == "torch"}
    rows = []
    if t:
        best = min(t["hvp-rev"], t["hvp-fwd"])
        rows += [("chainrule hvp-fwd / torch best hvp", c["hvp-fwd"] / best, 1.2),
                 ("chainrule hvp-rev / torch best hvp", c["hvp-rev"] / best, 1.2),
                 ("chainrule hvp-fwd / torch hvp-fwd (torch.func)", c["hvp-fwd"] / t["hvp-fwd"],
                  1.2),
                 ("chainrule hvp-rev / torch hvp-rev (double backward)",
                  c["hvp-rev"] / t["hvp-rev"], 1.2)]
        if ("numpy", "hvp") in med:
            rows.append(("numpy hand-written hvp / torch best hvp", med[("numpy", "hvp")] / best,
                         float("nan")))
    rows += [("chainrule hvp-fwd / chainrule grad", c["hvp-fwd"] / c["grad"], 4.0),
             ("chainrule hvp-rev / chainrule grad", c["hvp-rev"] / c["grad"], 4.0),
             ("chainrule jvp / chainrule forward", c["jvp"] / c["forward"], 3.0),
             ("chainrule hf-gn-fwd / chainrule grad", c["hf-gn-fwd"] / c["grad"], float("nan")),
             ("chainrule hf-gn-rev / chainrule grad", c["hf-gn-rev"] / c["grad"], float("nan"))]
    if t:
        rows += [("torch jvp / torch forward", t["jvp"] / t["forward"], float("nan")),
                 ("torch hvp-fwd / torch grad", t["hvp-fwd"] / t["grad"], float("nan"))]
    print(f"\n{'ratio':<52} {'measured':>9} {'target':>7}")
    for label, r, target in rows:
        tgt = "-" if target != target else f"<= {target:g}"
        print(f"{label:<52} {r:>8.2f}x {tgt:>7}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    print(f"# {platform.machine()}, {os.cpu_count()} cores; {versions()}")
    print("# MLP 784-512-512-10, ReLU, cross-entropy, batch 128, float32; products w.r.t. all "
          f"parameters; medians of {args.rounds * args.reps} interleaved calls\n")
    report(run(args.rounds, args.reps))


if __name__ == "__main__":
    main()
