"""A character-level transformer language model trained on the Python standard library's own
source code (text that every Python installation has; nothing is downloaded).

Corpus: the ``.py`` files of a fixed list of stdlib modules (``STDLIB_FILES``), read from
``sysconfig.get_paths()["stdlib"]`` and concatenated in that order; the first ``--chars``
characters are kept, the first 90% train, the last 10% validate. (The exact text depends on
the Python version; the version is printed.)

Model (GPT-style, pre-norm): token and learned position embeddings, ``--layers`` blocks of
``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")`` under a causal mask, a final
LayerNorm and a linear read-out to the vocabulary. Trained with AdamW (linear warm-up, then
cosine decay) on random windows of ``--block`` characters for a fixed budget of ``--steps``
steps, then evaluated: validation bits per character (cross-entropy in base 2, each position
predicted from the up to ``--block - 1`` characters before it in non-overlapping windows), and a
sample of generated text.

    python examples/char_transformer.py                         # ~2-3 min of CPU
    python examples/char_transformer.py --steps 3000 --d-model 192 --layers 4
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sysconfig
import time

import numpy as np

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn, optim
from chainrule.nn.transformer import (
    TransformerEncoder,
    TransformerEncoderLayer,
    generate_square_subsequent_mask,
)

STDLIB_FILES = (
    "textwrap.py", "string.py", "functools.py", "contextlib.py", "argparse.py",
    "dataclasses.py", "collections/__init__.py", "pathlib.py", "inspect.py", "typing.py",
    # only read where the ones above fall short of --chars (older Pythons, bigger corpora)
    "tarfile.py", "subprocess.py", "enum.py", "logging/__init__.py", "pydoc.py",
)


def load_corpus(n_chars: int = 600_000, files=STDLIB_FILES) -> str:
    """The first ``n_chars`` characters of the listed stdlib source files, concatenated.

    Example:
        >>> text = load_corpus(1000)
        >>> len(text)
        1000
    """
    root = sysconfig.get_paths()["stdlib"]
    parts, total = [], 0
    for name in files:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            parts.append(f.read())
        total += len(parts[-1])
        if total >= n_chars:
            break
    text = "".join(parts)
    if len(text) < n_chars:
        raise ValueError(f"load_corpus: the listed stdlib files hold only {len(text)} "
                         f"characters, fewer than the {n_chars} asked for")
    return text[:n_chars]


class CharTransformer(nn.Module):
    """Causal transformer over character ids: (B, L) int64 -> logits (B, L, vocab).

    Example:
        >>> net = CharTransformer(vocab_size=10, block_size=8, d_model=16, nhead=2, layers=1)
        >>> net(cr.zeros(2, 8, dtype=cr.int64)).shape
        (2, 8, 10)
    """

    def __init__(self, vocab_size: int, block_size: int = 64, d_model: int = 128,
                 nhead: int = 4, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(cr.empty(block_size, d_model))
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward=4 * d_model,
                                        dropout=dropout, activation="gelu", batch_first=True,
                                        norm_first=True)
        self.blocks = TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model),
                                         enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab_size)
        self._masks: dict[int, cr.Tensor] = {}

    def forward(self, idx):
        L = idx.shape[1]
        if L > self.block_size:
            raise ValueError(f"CharTransformer: sequence length {L} exceeds block_size "
                             f"{self.block_size}")
        mask = self._masks.get(L)
        if mask is None:
            mask = self._masks[L] = generate_square_subsequent_mask(L)
        x = self.tok(idx) + self.pos[:L]
        return self.head(self.blocks(x, mask=mask, is_causal=True))


def batch(data: np.ndarray, rng: np.random.Generator, batch_size: int, block: int):
    """Random windows: inputs (B, block) and the next-character targets (B, block)."""
    starts = rng.integers(0, len(data) - block - 1, batch_size)
    offs = starts[:, None] + np.arange(block + 1)
    w = data[offs]
    return w[:, :-1], w[:, 1:]


@cr.no_grad()
def bits_per_char(model: CharTransformer, data: np.ndarray, block: int,
                  max_chars: int = 40_000, batch_size: int = 64) -> float:
    """Mean cross-entropy in bits of each next character over non-overlapping windows of the
    first ``max_chars + 1`` characters of ``data``."""
    model.eval()
    n = (min(len(data) - 1, max_chars) // block) * block
    xs = data[:n].reshape(-1, block)
    ys = data[1:n + 1].reshape(-1, block)
    total = 0.0
    for i in range(0, len(xs), batch_size):
        logits = model(cr.from_numpy(xs[i:i + batch_size]))
        y = cr.from_numpy(ys[i:i + batch_size])
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    model.train()
    return total / n / math.log(2)


@cr.no_grad()
def generate(model: CharTransformer, prompt: np.ndarray, n: int, temperature: float = 0.8,
             seed: int = 0) -> np.ndarray:
    """Sample ``n`` characters after ``prompt`` (ids), each from softmax(logits / T) given
    the last ``block_size`` characters."""
    model.eval()
    rng = np.random.default_rng(seed)
    ids = list(prompt)
    for _ in range(n):
        ctx = np.asarray(ids[-model.block_size:], dtype=np.int64)[None]
        logits = model(cr.from_numpy(ctx))[0, -1].numpy().astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    model.train()
    return np.asarray(ids[len(prompt):], dtype=np.int64)


def train(steps: int = 1500, n_chars: int = 600_000, block: int = 64, batch_size: int = 32,
          d_model: int = 128, nhead: int = 4, layers: int = 2, lr: float = 2e-3,
          warmup: int = 100, seed: int = 0, log_every: int = 100, verbose: bool = True,
          jit: bool = False):
    """Train on the corpus; return ``(model, vocab, train_ids, val_ids, losses)``, losses the
    training cross-entropy (nats) of each step. ``jit=True`` captures the training step with
    ``chainrule.jit`` and replays it.

    Example:
        >>> out = train(steps=2, n_chars=5000, block=16, d_model=16, nhead=2, layers=1,
        ...             verbose=False)
        >>> len(out[-1])
        2
    """
    cr.manual_seed(seed)
    rng = np.random.default_rng(seed)
    text = load_corpus(n_chars)
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]

    model = CharTransformer(len(vocab), block, d_model, nhead, layers)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "pos"]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2 or n == "pos"]
    opt = optim.AdamW([{"params": decay, "weight_decay": 0.1},
                       {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    sched = optim.lr_scheduler.LambdaLR(opt, schedule)

    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    if jit:
        train_step = cr.jit(train_step)
    losses = []
    t0 = time.process_time()
    for step in range(1, steps + 1):
        x, y = batch(train_ids, rng, batch_size, block)
        loss = train_step(cr.from_numpy(x), cr.from_numpy(y))
        sched.step()
        losses.append(loss.item())
        if verbose and (step % log_every == 0 or step == 1):
            print(f"step {step:5d}  loss {np.mean(losses[-log_every:]) / math.log(2):.3f} "
                  f"bits/char  cpu {time.process_time() - t0:6.1f}s", flush=True)
    return model, vocab, train_ids, val_ids, losses


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="character-level transformer on stdlib sources")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--chars", type=int, default=600_000, help="corpus size in characters")
    ap.add_argument("--block", type=int, default=64, help="context length")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--sample-chars", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jit", action="store_true",
                    help="capture the training step with chainrule.jit and replay it")
    args = ap.parse_args(argv)

    print(f"corpus: the first {args.chars:,} characters of the stdlib sources "
          f"{', '.join(STDLIB_FILES[:3])} ... (Python {platform.python_version()})")
    t0, w0 = time.process_time(), time.perf_counter()
    model, vocab, train_ids, val_ids, losses = train(
        args.steps, args.chars, args.block, args.batch_size, args.d_model, args.heads,
        args.layers, args.lr, seed=args.seed, jit=args.jit)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    bpc = bits_per_char(model, val_ids, args.block)
    prompt = np.asarray([vocab.index(c) for c in "def "], dtype=np.int64)
    text = "".join(vocab[i] for i in generate(model, prompt, args.sample_chars, seed=args.seed))
    print(f"--- sample (temperature 0.8) ---\ndef {text}\n---")
    print(f"vocabulary {len(vocab)}, train {len(train_ids):,} / validation {len(val_ids):,} "
          f"characters; uniform guess {math.log2(len(vocab)):.2f} bits/char")
    print(f"training: {args.steps} steps of {args.batch_size}x{args.block} characters in "
          f"{cpu:.0f}s CPU ({wall:.0f}s wall)")
    print(f"validation bits per character: {bpc:.3f}")
    return {"losses": losses, "val_bpc": bpc, "sample": text}


if __name__ == "__main__":
    main()
