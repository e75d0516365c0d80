"""PyTorch programs run unchanged with ``import chainrule as torch`` (issue 14).

Each program below is written once, as PyTorch code, in a function that takes the module
``torch`` as its argument. It runs with chainrule; where PyTorch is installed it runs again with
real PyTorch from the same initial weights and the same data, and the two are compared:
losses at every step, outputs and final weights. Random draws inside the programs (sampling,
dropout masks, shuffles) differ between the libraries' generators, so those parts are checked
for reproducibility under ``manual_seed`` and for their distributional contract instead.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest

import chainrule

try:
    import torch as real_torch
except ImportError:  # pragma: no cover - the oracle is optional
    real_torch = None

needs_torch = pytest.mark.skipif(real_torch is None,
                                 reason="PyTorch (the oracle) is not installed")
pytestmark = [  # PyTorch's own notes about its CPU-only build, not about the programs
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled"),
    pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """PyTorch's first calls with its default thread pool took ~15 s on this shared 2-core
    machine (4 s with one thread): the oracle runs on one thread here."""
    if real_torch is None:
        yield
        return
    n = real_torch.get_num_threads()
    real_torch.set_num_threads(1)
    yield
    real_torch.set_num_threads(n)


def weights_of(model) -> dict:
    """A model's state_dict as NumPy arrays (to start the other library from them)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_weights(torch, model, weights):
    model.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})


def assert_close(a, b, rtol=2e-4, atol=1e-5, what=""):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def compare(program, *args, rtol=2e-4, atol=1e-5, **kwargs):
    """Run ``program`` with chainrule, then (if installed) PyTorch from the same weights;
    returns chainrule's result."""
    ours = program(chainrule, *args, **kwargs)
    if real_torch is not None:
        theirs = program(real_torch, *args, init=ours["init"], **kwargs)
        for key in ours:
            if key == "init" or key.startswith("_"):  # not comparable across libraries
                continue
            if isinstance(ours[key], dict):
                for k in ours[key]:
                    assert_close(ours[key][k], theirs[key][k], rtol, atol, f"{key}.{k}")
            else:
                assert_close(ours[key], theirs[key], rtol, atol, key)
    return ours


# ================================================================ 1. GPT-style language model
def gpt_program(torch, init=None, steps=4):
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)
    vocab, block, d, heads = 11, 8, 16, 2

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            # no q/k/v bias: the key bias gets a zero gradient (softmax ignores a constant per
            # row), and Adam would turn its float rounding noise into lr-sized steps
            self.qkv = nn.Linear(d, 3 * d, bias=False)
            self.proj = nn.Linear(d, d)
            self.register_buffer("mask", torch.tril(torch.ones(block, block))
                                 .view(1, 1, block, block))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.qkv(x).split(d, dim=2)
            q = q.view(B, T, heads, C // heads).transpose(1, 2)
            k = k.view(B, T, heads, C // heads).transpose(1, 2)
            v = v.view(B, T, heads, C // heads).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return self.proj(y)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = CausalSelfAttention()
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d),
                                     nn.Dropout(0.0))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(torch.zeros(1, block, d))
            self.blocks = nn.Sequential(Block(), Block())
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)

        def forward(self, idx, targets=None):
            _b, t = idx.size()
            x = self.tok(idx) + self.pos[:, :t, :]
            logits = self.head(self.ln(self.blocks(x)))
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

        @torch.no_grad()
        def generate(self, idx, n, temperature=1.0, top_k=None):
            for _ in range(n):
                cond = idx if idx.size(1) <= block else idx[:, -block:]
                logits, _ = self(cond)
                logits = logits[:, -1, :] / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, top_k)
                    logits[logits < v[:, [-1]]] = -float("Inf")
                probs = F.softmax(logits, dim=-1)
                idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
            return idx

    model = GPT()
    if init is not None:
        load_weights(torch, model, init)
    init_w = weights_of(model)
    data = torch.tensor(np.random.default_rng(0).integers(0, vocab, (64,)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    losses = []
    for step in range(steps):
        ix = torch.tensor(np.arange(4) * 13 + step)
        x = torch.stack([data[i:i + block] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        print(f"step {step}: loss {loss:.4f}", end="\r")
    model.eval()
    start = torch.zeros((1, 1), dtype=torch.long)
    logits, _ = model(data[:block].unsqueeze(0))
    torch.manual_seed(1)
    sample = model.generate(start, 10, temperature=0.8, top_k=3)
    return {"init": init_w, "losses": losses, "logits": logits.detach().numpy(),
            "weights": weights_of(model), "_sample": sample.tolist()}


def test_gpt_language_model_with_sampling():
    out = compare(gpt_program)
    assert out["losses"][-1] < out["losses"][0]
    again = gpt_program(chainrule, steps=0 + 4)["_sample"]
    assert out["_sample"] == again and len(again[0]) == 11  # reproducible under manual_seed


# ================================================================ 2. CNN classifier
def cnn_program(torch, init=None, epochs=2):
    nn, F = torch.nn, torch.nn.functional
    StepLR = torch.optim.lr_scheduler.StepLR
    DataLoader, TensorDataset = torch.utils.data.DataLoader, torch.utils.data.TensorDataset

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, 1)
            self.conv2 = nn.Conv2d(4, 8, 3, 1)
            self.dropout1 = nn.Dropout2d(0.25)
            self.fc1 = nn.Linear(8 * 2 * 2, 16)
            self.fc2 = nn.Linear(16, 3)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)

    torch.manual_seed(0)
    model = Net()
    model.dropout1.p = 0.0  # identical masks are impossible across generators
    if init is not None:
        load_weights(torch, model, init)
    init_w = weights_of(model)
    rng = np.random.default_rng(0)
    xs = torch.from_numpy(rng.normal(size=(24, 1, 8, 8)).astype(np.float32))
    ys = torch.from_numpy(rng.integers(0, 3, 24))
    loader = DataLoader(TensorDataset(xs, ys), batch_size=8, shuffle=False)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    losses, lrs = [], []
    for _ in range(epochs):
        model.train()
        for data, target in loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in loader:
            pred = model(data).argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    return {"init": init_w, "losses": losses, "lrs": lrs, "correct": correct,
            "weights": weights_of(model)}


def test_cnn_classifier_with_adadelta_and_steplr():
    out = compare(cnn_program)
    assert out["lrs"] == pytest.approx([0.7, 0.49])


# ================================================================ 3. RNN language model
def rnn_model_class(torch):
    """The word-language-model RNN for library ``torch``, bound to a module-level name so
    that ``torch.save(model)`` can pickle it (as a PyTorch program's class would be)."""
    nn = torch.nn

    class RNNModel(nn.Module):
        def __init__(self, ntoken=13, ninp=8, nhid=12, nlayers=2):
            super().__init__()
            self.drop = nn.Dropout(0.0)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers)
            self.decoder = nn.Linear(nhid, ntoken)
            self.nlayers, self.nhid = nlayers, nhid

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
            return torch.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))

    name = f"RNNModel_{torch.__name__}"
    RNNModel.__name__ = RNNModel.__qualname__ = name
    globals()[name] = RNNModel
    return RNNModel


def rnn_program(torch, path, init=None, steps=4):
    nn = torch.nn
    RNNModel = rnn_model_class(torch)

    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)

    torch.manual_seed(0)
    model = RNNModel()
    if init is not None:
        load_weights(torch, model, init)
    init_w = weights_of(model)
    corpus = torch.LongTensor(np.random.default_rng(0).integers(0, 13, 5 * 4 * steps + 1))
    data = corpus[:-1].narrow(0, 0, 5 * 4 * steps).view(4, -1).t().contiguous()
    criterion = nn.NLLLoss()
    hidden = model.init_hidden(4)
    losses = []
    for i in range(0, data.size(0) - 1, 5):
        seq_len = min(5, len(data) - 1 - i)
        x, y = data[i:i + seq_len], data[i + 1:i + 1 + seq_len].reshape(-1)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(x, hidden)
        loss = criterion(output, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-1.0)
        losses.append(loss.item())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # chainrule says it pickles; PyTorch always does
        with open(path, "wb") as f:
            torch.save(model, f)
    with open(path, "rb") as f:
        loaded = torch.load(f, weights_only=False)
    x0 = data[:5]
    a, _ = model(x0, model.init_hidden(4))
    b, _ = loaded(x0, loaded.init_hidden(4))
    assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    return {"init": init_w, "losses": losses, "weights": weights_of(loaded),
            "ppl": math.exp(losses[-1])}


def test_rnn_language_model_with_new_zeros_hidden_and_torch_save(tmp_path):
    compare(rnn_program, str(tmp_path / "model.pt"))


# ================================================================ 4. VAE
def vae_program(torch, init=None, steps=5):
    nn, F = torch.nn, torch.nn.functional

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(16, 12), nn.Linear(12, 3), nn.Linear(12, 3)
            self.fc3, self.fc4 = nn.Linear(3, 12), nn.Linear(12, 16)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar, eps):
            std = torch.exp(0.5 * logvar)
            return mu + eps * std

        def decode(self, z):
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

        def forward(self, x, eps):
            mu, logvar = self.encode(x.view(-1, 16))
            return self.decode(self.reparameterize(mu, logvar, eps)), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 16), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    torch.manual_seed(0)
    model = VAE()
    if init is not None:
        load_weights(torch, model, init)
    init_w = weights_of(model)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(size=(8, 4, 4)).astype(np.float32))
    noise = rng.normal(size=(steps, 8, 3)).astype(np.float32)  # the reparameterisation noise
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        eps = torch.from_numpy(noise[step])
        recon, mu, logvar = model(x, eps)
        loss = loss_function(recon, x, mu, logvar)
        loss.backward()
        optimizer.step()
        losses.append(loss.item() / len(x))
    with torch.no_grad():
        sample = model.decode(torch.randn(4, 3))  # sampling from the prior runs as well
    assert tuple(sample.shape) == (4, 16)
    return {"init": init_w, "losses": losses, "weights": weights_of(model)}


def test_vae():
    out = compare(vae_program)
    assert out["losses"][-1] < out["losses"][0]


# ================================================================ 5. GCN, sparse adjacency
def gcn_program(torch, init=None, steps=5):
    nn, F = torch.nn, torch.nn.functional

    class GraphConvolution(nn.Module):
        def __init__(self, in_features, out_features):
            super().__init__()
            self.weight = nn.Parameter(torch.FloatTensor(in_features, out_features))
            self.bias = nn.Parameter(torch.FloatTensor(out_features))
            stdv = 1.0 / math.sqrt(self.weight.size(1))
            self.weight.data.uniform_(-stdv, stdv)
            self.bias.data.uniform_(-stdv, stdv)

        def forward(self, input, adj):
            support = torch.mm(input, self.weight)
            return torch.spmm(adj, support) + self.bias

    class GCN(nn.Module):
        def __init__(self, nfeat, nhid, nclass, dropout):
            super().__init__()
            self.gc1, self.gc2 = GraphConvolution(nfeat, nhid), GraphConvolution(nhid, nclass)
            self.dropout = dropout

        def forward(self, x, adj):
            x = F.relu(self.gc1(x, adj))
            x = F.dropout(x, self.dropout, training=self.training)
            return F.log_softmax(self.gc2(x, adj), dim=1)

    rng = np.random.default_rng(0)
    n = 12
    edges = rng.integers(0, n, (2, 30))
    a = np.zeros((n, n), np.float32)
    a[edges[0], edges[1]] = 1
    a = np.maximum(a, a.T) + np.eye(n, dtype=np.float32)
    a = a / a.sum(1, keepdims=True)
    rows, cols = np.nonzero(a)
    adj = torch.sparse_coo_tensor(torch.LongTensor(np.stack([rows, cols])),
                                  torch.FloatTensor(a[rows, cols]), torch.Size([n, n]))
    features = torch.FloatTensor(rng.normal(size=(n, 6)).astype(np.float32))
    labels = torch.LongTensor(rng.integers(0, 3, n))
    idx_train = torch.LongTensor(range(8))
    torch.manual_seed(0)
    model = GCN(nfeat=6, nhid=8, nclass=3, dropout=0.0)
    if init is not None:
        load_weights(torch, model, init)
    init_w = weights_of(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=5e-4)
    losses = []
    for _ in range(steps):
        model.train()
        optimizer.zero_grad()
        output = model(features, adj)
        loss_train = F.nll_loss(output[idx_train], labels[idx_train])
        loss_train.backward()
        optimizer.step()
        losses.append(loss_train.item())
    model.eval()
    acc = (model(features, adj).max(1)[1].eq(labels).double().sum() / n).item()
    dense_out = F.log_softmax(model.gc2(F.relu(model.gc1(features, adj.to_dense())), adj), 1)
    return {"init": init_w, "losses": losses, "acc": acc, "weights": weights_of(model),
            "dense": dense_out.detach().numpy()}


def test_gcn_with_sparse_adjacency():
    compare(gcn_program)


# ================================================================ 6. DataLoader with workers
class SquaresDataset:
    """A map-style dataset that does a little work per sample (defined at module level so
    that spawned workers could import it too)."""

    def __init__(self, torch, n=20):
        self.torch, self.n = torch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        torch = self.torch
        info = torch.utils.data.get_worker_info()
        x = torch.arange(4, dtype=torch.float32) + i
        return x * x, i % 3, -1 if info is None else info.id


def loader_program(torch, init=None):
    DataLoader = torch.utils.data.DataLoader

    def worker_init_fn(worker_id):
        os.environ["COMPAT_WORKER"] = str(worker_id)

    ds = SquaresDataset(torch)
    loader = DataLoader(ds, batch_size=3, shuffle=False, num_workers=2, pin_memory=True,
                        worker_init_fn=worker_init_fn, persistent_workers=True,
                        prefetch_factor=2, drop_last=False)
    epochs = [[(x.numpy(), y.numpy(), w.numpy()) for x, y, w in loader] for _ in range(2)]
    torch.manual_seed(0)
    shuffled = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    seen = [int(v) for _, y, _ in shuffled for v in y.tolist()]
    return {"init": {}, "sums": np.array([x.sum() for x, _, _ in epochs[0]]),
            "labels": np.concatenate([y for _, y, _ in epochs[1]]),
            "workers": np.concatenate([w for _, _, w in epochs[0]]),
            "batches": np.array(len(epochs[0])), "seen": np.array(len(seen))}


def test_dataloader_with_workers():
    out = compare(loader_program)
    assert set(out["workers"].tolist()) == {0, 1} and int(out["batches"]) == 7


# ================================================================ the namespace itself
def test_names_that_programs_touch_at_import_exist():
    torch = chainrule
    assert torch.cuda.is_available() in (True, False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert torch.zeros(1, device=device).device == device
    flags = torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = flags
    assert torch.nn.modules.linear.Linear is torch.nn.Linear
    assert torch.utils.data.DataLoader is chainrule.data.DataLoader
    assert callable(torch.onnx.export) and callable(torch.compile)
    assert torch.serialization.add_safe_globals is not None


# ================================================================ `import torch` by name alone
PROGRAM = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset
import torch.backends.cudnn as cudnn

cudnn.benchmark = True
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
x = torch.randn(32, 4)
y = (x.sum(1) > 0).long()
loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2)).to(device)
opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
sched = StepLR(opt, step_size=5, gamma=0.5)
for epoch in range(10):
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb.to(device)), yb.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()
model.eval()
with torch.no_grad():
    acc = (model(x).argmax(1) == y).float().mean().item()
RESULT = (acc, type(model[0]), F.relu)
'''


def test_a_program_importing_torch_by_name_runs_on_chainrule():
    import sys

    saved = {k: v for k, v in sys.modules.items() if k == "torch" or k.startswith("torch.")}
    for k in saved:
        del sys.modules[k]
    sys.modules["torch"] = chainrule
    benchmark = chainrule.backends.cudnn.benchmark  # the program sets it: a process-wide flag
    try:
        scope = {}
        exec(compile(PROGRAM, "<ported program>", "exec"), scope)
    finally:
        chainrule.backends.cudnn.benchmark = benchmark
        for k in [k for k in sys.modules if k == "torch" or k.startswith("torch.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    acc, linear_cls, relu = scope["RESULT"]
    assert acc > 0.9
    # the submodules are chainrule's own, not second copies loaded under the alias
    assert linear_cls is chainrule.nn.Linear and relu is chainrule.nn.functional.relu
    assert chainrule.optim.__name__ == "chainrule.optim"
