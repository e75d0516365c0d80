"""Layers against PyTorch: the same weights loaded into both (through state_dict, which also
checks that the names match), then forward values and every gradient compared."""

import numpy as np
import pytest

import chainrule
from chainrule import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _to_torch_state(m):
    return {k: torch.from_numpy(np.array(v.numpy())) for k, v in m.state_dict().items()}


def _cr_dtype(np_dtype):
    return chainrule.float64 if np_dtype == np.float64 else chainrule.float32


def compare(m, tm, *inputs, dtype=np.float64, seed=0, grad_inputs=True, load=True, tol=None):
    """Load m's state into tm (unless ``load=False``); compare outputs, input grads and
    parameter grads."""
    m = m.to(_cr_dtype(dtype))
    tm = tm.to(torch.float64 if dtype == np.float64 else torch.float32)
    if load:
        tm.load_state_dict(_to_torch_state(m))
    m.zero_grad()
    tm.zero_grad()
    xs, txs = [], []
    for a in inputs:
        a = np.asarray(a)
        floating = a.dtype.kind == "f"
        if floating:
            a = a.astype(dtype)
        rg = grad_inputs and floating
        xs.append(chainrule.tensor(a, requires_grad=rg))
        txs.append(torch.tensor(a, requires_grad=rg))
    y, ty = m(*xs), tm(*txs)
    tol = tol or TOL[dtype]
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), **tol)
    g = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    y.backward(chainrule.tensor(g))
    ty.backward(torch.tensor(g))
    for x, tx in zip(xs, txs):
        if x.requires_grad:
            np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), **tol)
    tparams = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        tp = tparams[name]
        if tp.grad is None:
            assert p.grad is None or not p.grad.numpy().any(), name
        else:
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), **tol, err_msg=name)
    return m, tm


def rand(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(dtype, bias):
    compare(nn.Linear(5, 3, bias=bias), tnn.Linear(5, 3, bias=bias), rand(4, 5), dtype=dtype)
    compare(nn.Linear(5, 3, bias=bias), tnn.Linear(5, 3, bias=bias), rand(2, 4, 5), dtype=dtype)


def test_bilinear_identity_flatten_unflatten():
    compare(nn.Bilinear(3, 4, 2), tnn.Bilinear(3, 4, 2), rand(5, 3), rand(5, 4, seed=1))
    compare(nn.Identity(), tnn.Identity(), rand(2, 3))
    compare(nn.Flatten(), tnn.Flatten(), rand(2, 3, 4))
    compare(nn.Flatten(0, 1), tnn.Flatten(0, 1), rand(2, 3, 4))
    compare(nn.Unflatten(1, (2, 3)), tnn.Unflatten(1, (2, 3)), rand(4, 6))
    compare(nn.Unflatten(-1, (2, -1)), tnn.Unflatten(-1, (2, -1)), rand(4, 6))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_norm(dtype):
    x = rand(4, 3, 5, scale=3.0) + 2.0
    compare(nn.LayerNorm(5), tnn.LayerNorm(5), x, dtype=dtype)
    compare(nn.LayerNorm((3, 5), eps=1e-3), tnn.LayerNorm((3, 5), eps=1e-3), x, dtype=dtype)
    compare(nn.LayerNorm(5, bias=False), tnn.LayerNorm(5, bias=False), x, dtype=dtype)
    compare(nn.LayerNorm(5, elementwise_affine=False), tnn.LayerNorm(5, elementwise_affine=False),
            x, dtype=dtype)
    # non-trivial affine parameters
    m = nn.LayerNorm(5)
    nn.init.normal_(m.weight)
    nn.init.normal_(m.bias)
    compare(m, tnn.LayerNorm(5), x, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rms_norm(dtype):
    x = rand(4, 6, scale=2.0)
    m = nn.RMSNorm(6)
    nn.init.uniform_(m.weight, 0.5, 1.5)
    compare(m, tnn.RMSNorm(6), x, dtype=dtype)
    compare(nn.RMSNorm(6, eps=1e-3), tnn.RMSNorm(6, eps=1e-3), x, dtype=dtype)
    compare(nn.RMSNorm((2, 3), elementwise_affine=False),
            tnn.RMSNorm((2, 3), elementwise_affine=False), x.reshape(4, 2, 3), dtype=dtype)


def _bn_pair(cls, tcls, c, **kw):
    m, tm = cls(c, **kw), tcls(c, **kw)
    if m.weight is not None:
        nn.init.uniform_(m.weight, 0.5, 1.5)
    if m.bias is not None:
        nn.init.normal_(m.bias)
    return m, tm


@pytest.mark.parametrize("kw", [
    {}, {"momentum": None}, {"momentum": 0.3}, {"affine": False}, {"bias": False},
    {"track_running_stats": False}, {"eps": 1e-2},
])
@pytest.mark.parametrize("shape", [(8, 4), (6, 4, 5)])
def test_batchnorm1d_running_stats_over_steps(kw, shape):
    m, tm = _bn_pair(nn.BatchNorm1d, tnn.BatchNorm1d, 4, **kw)
    m, tm = m.double(), tm.double()
    tm.load_state_dict(_to_torch_state(m))
    rng = np.random.default_rng(1)
    for step in range(5):
        x = rng.standard_normal(shape) * (1 + step) + step  # drifting statistics
        compare(m, tm, x, seed=step, load=False)  # state carried over by each library
        for name, b in m.named_buffers():
            tb = dict(tm.named_buffers())[name]
            np.testing.assert_allclose(b.numpy(), tb.numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} after step {step}")
    m.eval()
    tm.eval()
    compare(m, tm, rng.standard_normal(shape) * 3 + 1)
    if kw.get("track_running_stats", True):
        assert int(m.num_batches_tracked) == 5


def test_batchnorm1d_float32_and_eval_forward():
    m, tm = _bn_pair(nn.BatchNorm1d, tnn.BatchNorm1d, 3)
    tm.load_state_dict(_to_torch_state(m))
    rng = np.random.default_rng(2)
    for _ in range(3):
        compare(m, tm, rng.standard_normal((16, 3)) * 4 + 10, dtype=np.float32, load=False)
    np.testing.assert_allclose(m.running_var.numpy(), tm.running_var.numpy(), rtol=1e-6)
    np.testing.assert_allclose(m.running_mean.numpy(), tm.running_mean.numpy(), rtol=1e-6)
    m.eval()
    tm.eval()
    compare(m, tm, rng.standard_normal((5, 3)) * 4 + 10, dtype=np.float32)


def test_batchnorm2d():
    m, tm = _bn_pair(nn.BatchNorm2d, tnn.BatchNorm2d, 3)
    m, tm = m.double(), tm.double()
    tm.load_state_dict(_to_torch_state(m))
    rng = np.random.default_rng(3)
    for _ in range(2):
        compare(m, tm, rng.standard_normal((4, 3, 5, 5)) + 1, load=False)
    np.testing.assert_allclose(m.running_var.numpy(), tm.running_var.detach().numpy(),
                               rtol=1e-12)
    m.eval()
    tm.eval()
    compare(m, tm, rng.standard_normal((2, 3, 5, 5)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_embedding_forward_and_grad(dtype):
    idx = np.array([[1, 2, 1], [0, 4, 1]])
    compare(nn.Embedding(5, 3), tnn.Embedding(5, 3), idx, dtype=dtype)
    compare(nn.Embedding(5, 3, padding_idx=1), tnn.Embedding(5, 3, padding_idx=1), idx,
            dtype=dtype)
    compare(nn.Embedding(5, 3, padding_idx=-1), tnn.Embedding(5, 3, padding_idx=-1), idx,
            dtype=dtype)


def test_embedding_padding_row_initialised_to_zero():
    m = nn.Embedding(6, 4, padding_idx=2)
    assert m.weight[2].abs().sum().item() == 0
    assert m.weight.abs().sum().item() > 0


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_embedding_max_norm_renormalises_like_torch(norm_type):
    m = nn.Embedding(6, 3, max_norm=1.0, norm_type=norm_type).double()
    tm = tnn.Embedding(6, 3, max_norm=1.0, norm_type=norm_type).double()
    tm.load_state_dict(_to_torch_state(m))
    idx = np.array([0, 3, 3, 5])
    y = m(chainrule.tensor(idx))
    ty = tm(torch.tensor(idx))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(m.weight.detach().numpy(), tm.weight.detach().numpy(),
                               rtol=1e-12)


ACTIVATIONS = [
    ("ReLU", {}), ("ReLU6", {}), ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.2}),
    ("ELU", {}), ("ELU", {"alpha": 0.5}), ("CELU", {"alpha": 2.0}), ("SELU", {}),
    ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("SiLU", {}), ("Mish", {}),
    ("Sigmoid", {}), ("Tanh", {}), ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 5}),
    ("LogSigmoid", {}), ("Softsign", {}), ("Hardtanh", {}), ("Hardtanh", {"min_val": -2.0,
                                                                        "max_val": 0.5}),
    ("Hardsigmoid", {}), ("Hardswish", {}), ("Softmax", {"dim": 1}), ("Softmax", {"dim": -1}),
    ("LogSoftmax", {"dim": 1}), ("Softmin", {"dim": 0}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", ACTIVATIONS)
def test_activation(name, kw, dtype):
    # values away from the kinks (0, +-1, +-3, 6) so finite precision cannot flip a branch
    x = rand(4, 5, seed=3, scale=3.0)
    x = np.where(np.abs(np.abs(x) - np.round(np.abs(x))) < 0.05, x + 0.1, x)
    m, tm = getattr(nn, name)(**kw), getattr(tnn, name)(**kw)
    assert repr(m) == repr(tm)
    tol = None
    if name in ("Hardsigmoid", "Hardswish") and dtype == np.float64:
        tol = dict(rtol=1e-7, atol=1e-12)  # PyTorch's backward uses a float32 1/6
    compare(m, tm, x, dtype=dtype, tol=tol)


@pytest.mark.parametrize("name,kw", [("ReLU", {}), ("LeakyReLU", {}), ("ELU", {}),
                                     ("Hardtanh", {}), ("SiLU", {}), ("ReLU6", {})])
def test_inplace_activation_matches_torch(name, kw):
    x = rand(3, 4, seed=5)
    w = chainrule.tensor(x, requires_grad=True)
    tw = torch.tensor(x, requires_grad=True)
    h, th = w * 1.0, tw * 1.0
    out = getattr(nn, name)(inplace=True, **kw)(h)
    tout = getattr(tnn, name)(inplace=True, **kw)(th)
    assert out is h
    np.testing.assert_allclose(h.detach().numpy(), th.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-12)


def test_reprs_match_torch():
    pairs = [
        (nn.Linear(3, 4), tnn.Linear(3, 4)), (nn.Linear(3, 4, bias=False),
                                              tnn.Linear(3, 4, bias=False)),
        (nn.Bilinear(2, 3, 4), tnn.Bilinear(2, 3, 4)),
        (nn.Dropout(0.1), tnn.Dropout(0.1)), (nn.Dropout(0.3, inplace=True),
                                              tnn.Dropout(0.3, inplace=True)),
        (nn.BatchNorm1d(4), tnn.BatchNorm1d(4)),
        (nn.BatchNorm1d(3, momentum=None, affine=False, track_running_stats=False),
         tnn.BatchNorm1d(3, momentum=None, affine=False, track_running_stats=False)),
        (nn.BatchNorm2d(3, bias=False), tnn.BatchNorm2d(3, bias=False)),
        (nn.LayerNorm(4), tnn.LayerNorm(4)),
        (nn.LayerNorm((2, 3), elementwise_affine=False, bias=False),
         tnn.LayerNorm((2, 3), elementwise_affine=False, bias=False)),
        (nn.RMSNorm(4), tnn.RMSNorm(4)), (nn.RMSNorm(4, eps=1e-3), tnn.RMSNorm(4, eps=1e-3)),
        (nn.Embedding(10, 3, padding_idx=0, max_norm=1.0),
         tnn.Embedding(10, 3, padding_idx=0, max_norm=1.0)),
        (nn.Embedding(5, 2, norm_type=1.0), tnn.Embedding(5, 2, norm_type=1.0)),
        (nn.Flatten(), tnn.Flatten()), (nn.Unflatten(1, (2, 2)), tnn.Unflatten(1, (2, 2))),
        (nn.Identity(), tnn.Identity()), (nn.Softmax(), tnn.Softmax()),
        (nn.ReLU(inplace=True), tnn.ReLU(inplace=True)),
        (nn.LeakyReLU(inplace=True), tnn.LeakyReLU(inplace=True)),
        (nn.MSELoss(), tnn.MSELoss()), (nn.CrossEntropyLoss(), tnn.CrossEntropyLoss()),
        (nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()]),
         tnn.ModuleList([tnn.Linear(2, 2) for _ in range(3)] + [tnn.ReLU()])),
        (nn.Sequential(nn.Linear(1, 2), nn.Sequential(nn.Tanh(), nn.Linear(2, 1))),
         tnn.Sequential(tnn.Linear(1, 2), tnn.Sequential(tnn.Tanh(), tnn.Linear(2, 1)))),
        (nn.ModuleDict({"a": nn.ReLU()}), tnn.ModuleDict({"a": tnn.ReLU()})),
    ]
    for m, tm in pairs:
        assert repr(m) == repr(tm)


def test_state_dict_keys_match_torch():
    pairs = [(nn.BatchNorm1d(3), tnn.BatchNorm1d(3)),
             (nn.BatchNorm1d(3, affine=False, track_running_stats=False),
              tnn.BatchNorm1d(3, affine=False, track_running_stats=False)),
             (nn.BCEWithLogitsLoss(pos_weight=chainrule.ones(2)),
              tnn.BCEWithLogitsLoss(pos_weight=torch.ones(2))),
             (nn.CrossEntropyLoss(weight=chainrule.ones(3)),
              tnn.CrossEntropyLoss(weight=torch.ones(3))),
             (nn.Embedding(3, 2), tnn.Embedding(3, 2)),
             (nn.LayerNorm(2, bias=False), tnn.LayerNorm(2, bias=False))]
    for m, tm in pairs:
        assert list(m.state_dict()) == list(tm.state_dict())
        assert [n for n, _ in m.named_buffers()] == [n for n, _ in tm.named_buffers()]


def test_linear_default_init_matches_torch_distribution():
    # same law: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
    _ = chainrule.manual_seed(0)
    m = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    w = m.weight.detach().numpy()
    assert np.abs(w).max() <= bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.01)
    tw = tnn.Linear(400, 300).weight.detach().numpy()
    np.testing.assert_allclose(w.std(), tw.std(), rtol=0.02)
    assert np.abs(m.bias.detach().numpy()).max() <= bound
