"""An LSTM on the adding problem (Hochreiter & Schmidhuber 1997; the form of Le, Jaitly &
Hinton 2015), a task that needs memory across the whole sequence.

Each input is a sequence of ``seq_len`` pairs (value, marker): the values are uniform on
[0, 1], the markers are zero except at two positions, one in each half of the sequence. The
target is the sum of the two marked values, read from the LSTM's last hidden state. Always
predicting 1.0 (the mean of the target) gives MSE Var(U1 + U2) = 1/6 = 0.167; a network that
forgets what it saw more than half a sequence ago cannot do better than about 0.08. The
example trains on fresh batches, then reports the MSE on a fixed held-out set of 2,000
sequences.

    python examples/lstm_adding.py                    # seq_len 100, about 1 min of CPU
    python examples/lstm_adding.py --seq-len 50 --steps 1500
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.nn.recurrent import LSTM

BASELINE_MSE = 1.0 / 6.0  # always predicting 1.0


def adding_batch(rng: np.random.Generator, batch: int, seq_len: int):
    """A batch of the adding problem: inputs (batch, seq_len, 2) float32, targets (batch, 1).

    Example:
        >>> x, y = adding_batch(np.random.default_rng(0), 4, 10)
        >>> x.shape, y.shape, x[..., 1].sum(axis=1).tolist()
        ((4, 10, 2), (4, 1), [2.0, 2.0, 2.0, 2.0])
        >>> bool(np.allclose((x[..., 0] * x[..., 1]).sum(1, keepdims=True), y))
        True
    """
    if seq_len < 2:
        raise ValueError(f"adding_batch: seq_len must be at least 2, got {seq_len}")
    half = seq_len // 2
    values = rng.random((batch, seq_len))
    markers = np.zeros((batch, seq_len))
    rows = np.arange(batch)
    markers[rows, rng.integers(0, half, batch)] = 1.0
    markers[rows, rng.integers(half, seq_len, batch)] = 1.0
    x = np.stack([values, markers], axis=2).astype(np.float32)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return x, y


class AddingLSTM(nn.Module):
    """LSTM over the sequence, then a linear read-out of the last hidden state.

    Example:
        >>> net = AddingLSTM(hidden=8)
        >>> net(cr.zeros(3, 5, 2)).shape
        (3, 1)
    """

    def __init__(self, hidden: int = 64, num_layers: int = 1):
        super().__init__()
        self.lstm = LSTM(2, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


@cr.no_grad()
def evaluate(model: AddingLSTM, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Mean squared error of ``model`` on a fixed set (in batches)."""
    total = 0.0
    for i in range(0, len(x), batch):
        pred = model(cr.from_numpy(x[i:i + batch])).numpy()
        total += float(((pred - y[i:i + batch]) ** 2).sum())
    return total / len(x)


def train(steps: int = 2500, seq_len: int = 100, hidden: int = 64, batch_size: int = 64,
          lr: float = 1e-2, clip: float = 1.0, seed: int = 0, log_every: int = 100,
          verbose: bool = True, jit: bool = False):
    """Train with Adam (and gradient clipping) on fresh batches; return ``(model, losses)``,
    losses the training MSE of each step. ``jit=True`` captures the training step with
    ``chainrule.jit`` and replays it.

    Example:
        >>> _, losses = train(steps=3, seq_len=6, hidden=8, verbose=False)
        >>> len(losses)
        3
    """
    cr.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AddingLSTM(hidden)
    opt = optim.Adam(model.parameters(), lr=lr)
    lr_sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)

    def train_step(x, y):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss

    if jit:
        train_step = cr.jit(train_step)
    losses = []
    t0 = time.process_time()
    for step in range(1, steps + 1):
        x, y = adding_batch(rng, batch_size, seq_len)
        loss = train_step(cr.from_numpy(x), cr.from_numpy(y))
        lr_sched.step()
        losses.append(loss.item())
        if verbose and (step % log_every == 0 or step == 1):
            print(f"step {step:5d}  mse {np.mean(losses[-log_every:]):.4f}  "
                  f"cpu {time.process_time() - t0:6.1f}s", flush=True)
    return model, losses


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="LSTM on the adding problem")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jit", action="store_true",
                    help="capture the training step with chainrule.jit and replay it")
    args = ap.parse_args(argv)

    t0 = time.process_time()
    model, losses = train(args.steps, args.seq_len, args.hidden, args.batch_size, args.lr,
                          seed=args.seed, jit=args.jit)
    x_test, y_test = adding_batch(np.random.default_rng(10_000 + args.seed), 2000, args.seq_len)
    mse = evaluate(model, x_test, y_test)
    cpu = time.process_time() - t0
    print(f"train mse: first 50 steps {np.mean(losses[:50]):.4f}, "
          f"last 50 {np.mean(losses[-50:]):.4f}")
    print(f"test mse: {mse:.4f} (baseline of predicting 1.0: {BASELINE_MSE:.4f}; "
          f"seq_len {args.seq_len}, {args.steps} steps, cpu {cpu:.0f}s)")
    return {"losses": losses, "test_mse": mse}


if __name__ == "__main__":
    main()
