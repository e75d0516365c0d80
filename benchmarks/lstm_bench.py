"""LSTM training step, side by side: chainrule vs PyTorch eager vs hand-written NumPy.

The workload of issue 4: one LSTM layer (input 32, hidden 128), sequence 50, batch 32, MSE
loss on the last hidden state, one SGD step (lr 0.01). Every library starts from the same
weights and data. The runner interleaves the libraries round by round (so drift on a busy
machine hits all of them alike) and prints medians and the ratio to PyTorch.

    python benchmarks/lstm_bench.py                # 2 threads (the machine default)
    python benchmarks/lstm_bench.py --threads 1    # one BLAS / torch thread
    python benchmarks/lstm_bench.py --cells        # also chainrule built from LSTMCell steps
    python benchmarks/lstm_bench.py --threads 1 --cpu-time --repeat 3
                                                   # process CPU time: steadier on a busy machine

Libraries:
    chainrule        nn.LSTM (input projection in one matmul, one fused scan per layer)
    chainrule-cells  nn.LSTMCell called per time step (what the fused scan replaces)
    torch            torch.nn.LSTM, eager
    numpy            hand-written forward and backward, batched input projection (the floor)

``WORKLOADS`` has the same shape as ``benchmarks/bench.py``'s registry (name -> {library:
factory() -> step}), so the suite can merge it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from common import set_threads, versions

SEQ, BATCH, INPUT, HIDDEN = 50, 32, 32, 128
LR = 0.01


def _data(seed: int = 0):
    """Weights in PyTorch's layout and init, inputs and targets, all float32 NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    k = 1 / HIDDEN ** 0.5
    shapes = {"weight_ih_l0": (4 * HIDDEN, INPUT), "weight_hh_l0": (4 * HIDDEN, HIDDEN),
              "bias_ih_l0": (4 * HIDDEN,), "bias_hh_l0": (4 * HIDDEN,)}
    weights = {n: rng.uniform(-k, k, s).astype(np.float32) for n, s in shapes.items()}
    x = rng.standard_normal((SEQ, BATCH, INPUT)).astype(np.float32)
    y = rng.standard_normal((BATCH, HIDDEN)).astype(np.float32)
    return weights, x, y


def _chainrule():
    import chainrule as cr
    import chainrule.nn.functional as F
    from chainrule import optim
    from chainrule.nn.recurrent import LSTM

    weights, x, y = _data()
    model = LSTM(INPUT, HIDDEN)
    model.load_state_dict({n: cr.tensor(a) for n, a in weights.items()})
    opt = optim.SGD(model.parameters(), lr=LR)
    xt, yt = cr.tensor(x), cr.tensor(y)

    def step():
        opt.zero_grad()
        _, (h, _) = model(xt)
        loss = F.mse_loss(h[-1], yt)
        loss.backward()
        opt.step()
        return loss

    return step


def _chainrule_cells():
    import chainrule as cr
    import chainrule.nn.functional as F
    from chainrule import optim
    from chainrule.nn.recurrent import LSTMCell

    weights, x, y = _data()
    cell = LSTMCell(INPUT, HIDDEN)
    cell.load_state_dict({n[:-3]: cr.tensor(a) for n, a in weights.items()})
    opt = optim.SGD(cell.parameters(), lr=LR)
    xs = [cr.tensor(x[t]) for t in range(SEQ)]
    yt = cr.tensor(y)

    def step():
        opt.zero_grad()
        h = c = None
        for xt in xs:
            h, c = cell(xt, None if h is None else (h, c))
        loss = F.mse_loss(h, yt)
        loss.backward()
        opt.step()
        return loss

    return step


def _torch():
    import torch

    weights, x, y = _data()
    model = torch.nn.LSTM(INPUT, HIDDEN)
    model.load_state_dict({n: torch.from_numpy(a.copy()) for n, a in weights.items()})
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        _, (h, _) = model(xt)
        loss = torch.nn.functional.mse_loss(h[-1], yt)
        loss.backward()
        opt.step()
        return loss

    return step


def _numpy():
    import numpy as np

    weights, x, y = _data()
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]
    b_ih, b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]
    L, B, H = SEQ, BATCH, HIDDEN
    f32 = np.float32
    scale = np.full(4 * H, 0.5, f32)
    scale[2 * H:3 * H] = 1  # sigmoid(x) = 0.5 tanh(x / 2) + 0.5 on i, f, o; tanh on g
    shift = 1 - scale
    on_g = 1 - 2 * shift  # 1 on g, 0 elsewhere

    def step():
        xg = (x.reshape(L * B, -1) @ w_ih.T + (b_ih + b_hh)).reshape(L, B, 4 * H)
        w_t = np.ascontiguousarray(w_hh.T)
        hs = np.zeros((L + 1, B, H), f32)
        cs = np.zeros((L + 1, B, H), f32)
        acts = np.empty((L, B, 4 * H), f32)
        for t in range(L):
            a = acts[t]
            np.matmul(hs[t], w_t, out=a)
            a += xg[t]
            a *= scale
            np.tanh(a, out=a)
            a *= scale
            a += shift
            np.multiply(a[:, H:2 * H], cs[t], out=cs[t + 1])
            cs[t + 1] += a[:, :H] * a[:, 2 * H:3 * H]
            np.tanh(cs[t + 1], out=hs[t + 1])
            hs[t + 1] *= a[:, 3 * H:]
        d = hs[L] - y
        loss = float((d * d).mean())
        dh = d * f32(2 / d.size)
        dc = np.zeros_like(dh)
        dgates = np.empty_like(acts)
        for t in reversed(range(L)):
            a = acts[t]
            tc = np.tanh(cs[t + 1])
            dc += dh * a[:, 3 * H:] * (1 - tc * tc)
            da = dgates[t]
            np.multiply(dc, a[:, 2 * H:3 * H], out=da[:, :H])
            np.multiply(dc, cs[t], out=da[:, H:2 * H])
            np.multiply(dc, a[:, :H], out=da[:, 2 * H:3 * H])
            np.multiply(dh, tc, out=da[:, 3 * H:])
            da *= (a + on_g) * (1 - a)
            dc *= a[:, H:2 * H]
            dh = da @ w_hh
        dg = dgates.reshape(L * B, 4 * H)
        grad_hh = dg.T @ hs[:L].reshape(L * B, H)
        grad_ih = dg.T @ x.reshape(L * B, -1)
        grad_b = dg.sum(0)
        w_ih[...] -= LR * grad_ih
        w_hh[...] -= LR * grad_hh
        b_ih[...] -= LR * grad_b
        b_hh[...] -= LR * grad_b
        return loss

    return step


WORKLOADS = {"lstm": {"chainrule": _chainrule, "torch": _torch, "numpy": _numpy}}


def _value(loss):
    return loss.detach() if hasattr(loss, "detach") else loss


def check_agreement(steps: int = 3) -> float:
    """Largest relative difference of the losses over a few steps (chainrule vs torch vs
    numpy), so that the libraries are seen to compute the same thing."""
    runs = {}
    for lib, factory in WORKLOADS["lstm"].items():
        try:
            step = factory()
        except ImportError:
            continue
        runs[lib] = [float(_value(step())) for _ in range(steps)]
    ref = runs["chainrule"]
    return max(abs(a - b) / abs(b) for r in runs.values() for a, b in zip(r, ref))


def run(libs: dict, rounds: int, reps: int, warmup: int = 3, clock=time.perf_counter) -> dict:
    """Median seconds per step per library, the libraries interleaved round by round.
    ``clock``: wall time by default; ``time.process_time`` counts only this process's CPU
    time (all its threads), which a busy shared machine disturbs much less."""
    steps = {}
    for lib, factory in libs.items():
        try:
            steps[lib] = factory()
        except ImportError as e:
            print(f"  {lib} skipped: {e}", file=sys.stderr)
    for s in steps.values():
        for _ in range(warmup):
            s()
    times = {lib: [] for lib in steps}
    for _ in range(rounds):
        for lib, s in steps.items():
            for _ in range(reps):
                t0 = clock()
                s()
                times[lib].append(clock() - t0)
    return {lib: statistics.median(t) for lib, t in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the whole comparison this many times and report each and the "
                         "median ratio")
    ap.add_argument("--cells", action="store_true", help="also time chainrule with LSTMCell")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with process CPU time instead of wall time (steadier on a busy "
                         "machine; with several threads it also counts their spinning)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    libs = dict(WORKLOADS["lstm"])
    if args.cells:
        libs["chainrule-cells"] = _chainrule_cells
    print(f"# LSTM step: input {INPUT}, hidden {HIDDEN}, seq {SEQ}, batch {BATCH}, MSE on the "
          f"last hidden state, SGD")
    print(f"# {platform.machine()}, {os.cpu_count()} cores; {versions()}")
    print(f"# clock: {'process CPU time' if args.cpu_time else 'wall time'}")
    print(f"# losses agree to {check_agreement():.1e} (relative)")
    ratios = {lib: [] for lib in libs}
    for k in range(args.repeat):
        med = run(libs, args.rounds, args.reps,
                  clock=time.process_time if args.cpu_time else time.perf_counter)
        base = med.get("torch")
        print(f"run {k + 1}: " + ", ".join(
            f"{lib} {m * 1e3:.2f} ms" + (f" ({m / base:.2f}x)" if base else "")
            for lib, m in med.items()))
        for lib, m in med.items():
            if base:
                ratios[lib].append(m / base)
    if "torch" in ratios and args.repeat > 1:
        print("median ratio to torch: " + ", ".join(
            f"{lib} {statistics.median(r):.2f}x" for lib, r in ratios.items() if r))


if __name__ == "__main__":
    main()
