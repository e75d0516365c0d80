"""Transformer LM training step: chainrule vs PyTorch eager, side by side in one process.

The workload (issue 4): a character-level language model with vocabulary 65, d_model 128,
4 heads, 2 pre-norm blocks (``TransformerEncoderLayer(norm_first=True)``, MLP ratio 4, exact
GELU, no dropout), token embedding plus learned positional embedding, causal attention over
sequences of 64, batch 16, a final LayerNorm and a linear head, cross-entropy over the vocab,
and one Adam update. Both libraries start from the same weights (PyTorch's state_dict is
loaded into the chainrule model) and see the same batch; the first step's losses are
checked to agree before timing.

    python benchmarks/transformer_bench.py                 # default (2) threads
    python benchmarks/transformer_bench.py --threads 1
    python benchmarks/transformer_bench.py --profile       # cProfile of the chainrule step
    python benchmarks/transformer_bench.py --threads 1 --cpu-time  # steadier on a busy machine

Rounds interleave the two libraries (so drift on a shared machine hits both alike); the
medians over all timed steps and their ratio are printed. The factories are also usable from
``benchmarks/bench.py`` (``make_chainrule_step``, ``make_torch_step``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from common import set_threads, versions

VOCAB, D_MODEL, HEADS, LAYERS, SEQ, BATCH = 65, 128, 4, 2, 64, 16


def _batch(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    data = rng.integers(0, VOCAB, (BATCH, SEQ + 1))
    return data[:, :-1].copy(), data[:, 1:].copy()


def _torch_model():
    import torch
    from torch import nn

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, D_MODEL)
            self.pos = nn.Embedding(SEQ, D_MODEL)
            self.blocks = nn.ModuleList([
                nn.TransformerEncoderLayer(D_MODEL, HEADS, 4 * D_MODEL, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
                for _ in range(LAYERS)])
            self.norm = nn.LayerNorm(D_MODEL)
            self.head = nn.Linear(D_MODEL, VOCAB)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ))

        def forward(self, idx):
            x = self.tok(idx) + self.pos.weight[:idx.shape[1]]
            for blk in self.blocks:
                x = blk(x, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(x).reshape(-1, D_MODEL))

    torch.manual_seed(0)
    return LM()


def _chainrule_model():
    import chainrule
    from chainrule import nn
    from chainrule.nn.transformer import Transformer, TransformerEncoderLayer

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(VOCAB, D_MODEL)
            self.pos = nn.Embedding(SEQ, D_MODEL)
            self.blocks = nn.ModuleList([
                TransformerEncoderLayer(D_MODEL, HEADS, 4 * D_MODEL, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
                for _ in range(LAYERS)])
            self.norm = nn.LayerNorm(D_MODEL)
            self.head = nn.Linear(D_MODEL, VOCAB)
            self.register_buffer("mask", Transformer.generate_square_subsequent_mask(SEQ))

        def forward(self, idx):
            x = self.tok(idx) + self.pos.weight[:idx.shape[1]]
            for blk in self.blocks:
                x = blk(x, src_mask=self.mask, is_causal=True)
            return self.head(self.norm(x).reshape(-1, D_MODEL))

    chainrule.manual_seed(0)
    return LM()


def make_torch_step():
    """A zero-argument training step of the PyTorch model; returns the loss."""
    import torch
    import torch.nn.functional as F

    model = _torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch()
    X, Y = torch.from_numpy(x), torch.from_numpy(y).reshape(-1)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(X), Y)
        loss.backward()
        opt.step()
        return loss

    return step


def make_chainrule_step(from_torch: bool = True):
    """A zero-argument training step of the chainrule model (weights copied from the PyTorch
    model when it is installed); returns the loss."""
    import chainrule
    import chainrule.nn.functional as F
    from chainrule import optim

    model = _chainrule_model()
    if from_torch:
        try:
            tm = _torch_model()
        except ImportError:
            tm = None
        if tm is not None:
            model.load_state_dict({k: chainrule.from_numpy(v.detach().numpy().copy())
                                   for k, v in tm.state_dict().items()})
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch()
    X, Y = chainrule.from_numpy(x), chainrule.from_numpy(y).reshape(-1)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(X), Y)
        loss.backward()
        opt.step()
        return loss

    return step


def run(rounds: int = 15, reps: int = 10, warmup: int = 3, clock=time.perf_counter) -> dict:
    """Interleaved timing; returns {library: [seconds per step, ...]}."""
    steps = {"chainrule": make_chainrule_step()}
    try:
        steps["torch"] = make_torch_step()
    except ImportError as e:
        print(f"torch skipped: {e}", file=sys.stderr)
    first = {lib: float(s().item()) for lib, s in steps.items()}
    if "torch" in first and abs(first["torch"] - first["chainrule"]) > 1e-4 * abs(first["torch"]):
        raise SystemExit(f"first-step losses disagree: {first}")
    for s in steps.values():
        for _ in range(warmup):
            s()
    times: dict = {lib: [] for lib in steps}
    for _ in range(rounds):
        for lib, s in steps.items():
            for _ in range(reps):
                t0 = clock()
                s()
                times[lib].append(clock() - t0)
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--profile", action="store_true", help="cProfile 20 chainrule steps")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process CPU clock (a steadier proxy on a busy machine "
                         "with --threads 1; wall clock otherwise)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    if args.profile:
        import cProfile
        import pstats

        step = make_chainrule_step()
        for _ in range(3):
            step()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    print(f"# {platform.machine()}, {os.cpu_count()} cores; {versions()}")
    clock = time.process_time if args.cpu_time else time.perf_counter
    times = run(args.rounds, args.reps, clock=clock)
    med = {lib: statistics.median(t) for lib, t in times.items()}
    print(f"{'library':<10} {'median ms':>10} {'vs torch':>9}")
    for lib, m in med.items():
        ratio = f"{m / med['torch']:.2f}x" if "torch" in med else "-"
        print(f"{lib:<10} {m * 1e3:>10.2f} {ratio:>9}")


if __name__ == "__main__":
    main()
