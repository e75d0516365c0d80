"""Small training setups shared by the jit tests: each returns (model, optimiser, scheduler or
None, batches, loss function), built from a fixed seed so two builds are identical."""

from __future__ import annotations

import numpy as np

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn


def _batches(n, make):
    rng = np.random.default_rng(0)
    return [make(rng) for _ in range(n)]


def mlp_sgd(steps):
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = cr.optim.SGD(model.parameters(), lr=0.1)
    data = _batches(steps, lambda r: (cr.tensor(r.standard_normal((16, 20)).astype("float32")),
                                      cr.tensor(r.integers(0, 10, 16))))
    return model, opt, None, data, F.cross_entropy


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3)
        self.c2 = nn.Conv2d(4, 8, 3)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.reshape(x.shape[0], -1))


def lenet_momentum(steps):
    cr.manual_seed(0)
    model = LeNet()
    opt = cr.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    data = _batches(steps, lambda r: (
        cr.tensor(r.standard_normal((8, 1, 14, 14)).astype("float32")),
        cr.tensor(r.integers(0, 10, 8))))
    return model, opt, None, data, F.cross_entropy


class TinyLM(nn.Module):
    def __init__(self, vocab=11, d=16, heads=2, seq=8):
        super().__init__()
        from chainrule.nn.transformer import Transformer, TransformerEncoderLayer

        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.block = TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.d = d
        self.register_buffer("mask", Transformer.generate_square_subsequent_mask(seq))

    def forward(self, idx):
        x = self.tok(idx) + self.pos.weight[:idx.shape[1]]
        x = self.block(x, src_mask=self.mask, is_causal=True)
        return self.head(self.norm(x).reshape(-1, self.d))


def transformer_adam(steps):
    cr.manual_seed(0)
    model = TinyLM()
    opt = cr.optim.Adam(model.parameters(), lr=3e-3)
    sched = cr.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def make(r):
        data = r.integers(0, 11, (4, 9))
        return cr.tensor(data[:, :-1].copy()), cr.tensor(data[:, 1:].reshape(-1).copy())

    return model, opt, sched, _batches(steps, make), F.cross_entropy


class TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 8, batch_first=True)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y[:, -1])


def lstm_adam(steps):
    cr.manual_seed(0)
    model = TinyLSTM()
    opt = cr.optim.Adam(model.parameters(), lr=1e-2)
    data = _batches(steps, lambda r: (cr.tensor(r.standard_normal((4, 6, 3)).astype("float32")),
                                      cr.tensor(r.standard_normal((4, 1)).astype("float32"))))
    return model, opt, None, data, F.mse_loss


def bn_dropout(steps):
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(16, 3))
    opt = cr.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = _batches(steps, lambda r: (cr.tensor(r.standard_normal((12, 10)).astype("float32")),
                                      cr.tensor(r.integers(0, 3, 12))))
    return model, opt, None, data, F.cross_entropy


SETUPS = {"mlp_sgd": mlp_sgd, "lenet_momentum": lenet_momentum,
          "transformer_adam": transformer_adam, "lstm_adam": lstm_adam, "bn_dropout": bn_dropout}


def train(setup, steps, jit, **jit_kwargs):
    """Run ``steps`` training steps; returns (losses, final state arrays, the step function)."""
    model, opt, sched, data, loss_fn = SETUPS[setup](steps)
    model.train()
    cr.manual_seed(1)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = cr.jit(step, **jit_kwargs) if jit else step
    losses = []
    for x, y in data:
        losses.append(f(x, y).detach().numpy().copy())
        if sched is not None:
            sched.step()
    state = [p.detach().numpy().copy() for p in model.parameters()]
    state += [b.numpy().copy() for b in model.buffers()]
    state += [p.grad.numpy().copy() for p in model.parameters()]
    for st in opt.state.values():
        for v in st.values():
            state.append(v.numpy().copy() if hasattr(v, "numpy") else np.asarray(v))
    return losses, state, f
