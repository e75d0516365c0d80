"""Layers and losses without an oracle: dropout statistics, train/eval behaviour, errors for
bad input, numerical stability, the residual block of the docs."""

import math

import numpy as np
import pytest

import chainrule
from chainrule import nn
from chainrule.errors import GraphError, ShapeError


# ---------------------------------------------------------------- Dropout
def test_dropout_statistics_and_gradient():
    _ = chainrule.manual_seed(0)
    p = 0.3
    x = chainrule.ones(200_000, requires_grad=True)
    y = nn.Dropout(p)(x)
    kept = y.detach().numpy() != 0
    assert abs(1 - kept.mean() - p) < 0.005  # ~4.6 sigma for n=2e5
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / (1 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, kept)  # the same mask
    np.testing.assert_allclose(x.grad.numpy()[kept], 1 / (1 - p), rtol=1e-6)


def test_dropout_eval_and_edge_probabilities_and_seed():
    x = chainrule.randn(10)
    d = nn.Dropout(0.5).eval()
    assert d(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert nn.Dropout(1.0)(x).abs().sum().item() == 0
    _ = chainrule.manual_seed(3)
    a = nn.Dropout()(chainrule.ones(50))
    _ = chainrule.manual_seed(3)
    b = nn.Dropout()(chainrule.ones(50))
    assert a.tolist() == b.tolist()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_inplace():
    _ = chainrule.manual_seed(1)
    x = chainrule.ones(100)
    out = nn.Dropout(0.5, inplace=True)(x)
    assert out is x and set(x.tolist()) == {0.0, 2.0}
    leaf = chainrule.ones(3, requires_grad=True)
    with pytest.raises(GraphError, match="leaf"):
        nn.Dropout(0.5, inplace=True)(leaf)


# ---------------------------------------------------------------- Linear, Flatten
def test_linear_shape_errors_and_init_bounds():
    fc = nn.Linear(4, 3)
    with pytest.raises(ShapeError, match="in_features 4"):
        fc(chainrule.ones(2, 5))
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(-1, 3)
    with pytest.warns(UserWarning, match="zero-element"):  # as in PyTorch
        assert nn.Linear(0, 3).bias.abs().sum().item() == 0  # fan_in 0: bias bound 0
    assert nn.Linear(4, 3, dtype=chainrule.float64).weight.dtype == chainrule.float64
    b = 1 / math.sqrt(4)
    assert fc.weight.abs().max().item() <= b and fc.bias.abs().max().item() <= b
    with pytest.raises(ValueError, match="Bilinear"):
        nn.Bilinear(2, 3, 1)(chainrule.ones(4, 2), chainrule.ones(4, 2))
    with pytest.raises(TypeError, match="unflattened_size"):
        nn.Unflatten(1, 6)


# ---------------------------------------------------------------- Embedding
def test_embedding_errors():
    emb = nn.Embedding(5, 2)
    with pytest.raises(TypeError, match="integer"):
        emb(chainrule.tensor([1.0]))
    with pytest.raises(IndexError, match="index 5 is out of range for a table of 5 rows"):
        emb(chainrule.tensor([0, 5]))
    with pytest.raises(IndexError, match="index -1"):
        emb(chainrule.tensor([-1]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="_weight"):
        nn.Embedding(5, 2, _weight=chainrule.ones(4, 2))


def test_embedding_gradient_accumulates_repeated_rows_and_skips_padding():
    w = np.arange(12.0).reshape(4, 3)
    emb = nn.Embedding(4, 3, padding_idx=0, _weight=chainrule.tensor(w))
    idx = chainrule.tensor([[2, 0, 2], [1, 2, 0]])
    out = emb(idx)
    np.testing.assert_array_equal(out.detach().numpy(), w[idx.numpy()])
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[:, 0], [0.0, 1.0, 3.0, 0.0])
    assert emb(chainrule.tensor(3)).shape == (3,)  # a 0-d index gives one row


def test_embedding_from_pretrained():
    table = chainrule.tensor([[1.0, 2.0], [3.0, 4.0]])
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad and emb.weight._data is table._data
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    with pytest.raises(ValueError, match="2-D"):
        nn.Embedding.from_pretrained(chainrule.ones(3))


# ---------------------------------------------------------------- norms
def test_layer_norm_rejects_wrong_trailing_shape():
    with pytest.raises(ShapeError, match="normalized_shape"):
        nn.LayerNorm(4)(chainrule.ones(2, 5))


def test_batchnorm_train_eval_behaviour():
    bn = nn.BatchNorm1d(2)
    x = chainrule.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, 60.0]])
    y = bn(x)
    # training: batch statistics, biased variance
    np.testing.assert_allclose(y.detach().numpy().mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(y.detach().numpy().var(0), 1, rtol=1e-3)
    xa = x.numpy()
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * xa.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * xa.var(0, ddof=1),
                               rtol=1e-6)
    assert bn.num_batches_tracked.item() == 1
    # evaluation: running statistics, no update
    bn.eval()
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    y_eval = bn(x)
    np.testing.assert_allclose(y_eval.detach().numpy(), (xa - rm) / np.sqrt(rv + 1e-5),
                               rtol=1e-5)
    assert np.array_equal(bn.running_mean.numpy(), rm)
    assert bn.num_batches_tracked.item() == 1


def test_batchnorm_cumulative_average_with_momentum_none():
    bn = nn.BatchNorm1d(1, momentum=None).double()
    batches = [np.array([[1.0], [2.0]]), np.array([[5.0], [9.0]]), np.array([[0.0], [4.0]])]
    for b in batches:
        bn(chainrule.tensor(b))
    np.testing.assert_allclose(bn.running_mean.numpy(), [np.mean([b.mean() for b in batches])],
                               rtol=1e-12)
    # the initial running_var of 1 is replaced at the first step (factor 1/1)
    np.testing.assert_allclose(bn.running_var.numpy(),
                               [np.mean([b.var(ddof=1) for b in batches])], rtol=1e-12)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    bn = nn.BatchNorm1d(2, track_running_stats=False, affine=False).eval()
    assert bn.running_mean is None and list(bn.state_dict()) == []
    y = bn(chainrule.tensor([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_allclose(y.numpy(), [[-1, -1], [1, 1]], rtol=1e-4)


def test_batchnorm_bad_input_changes_nothing():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        bn(chainrule.ones(2, 3, 4, 5))
    with pytest.raises(ValueError, match="expected 3 channels"):
        bn(chainrule.ones(4, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(chainrule.ones(1, 3))
    assert bn.num_batches_tracked.item() == 0
    assert bn.running_mean.abs().sum().item() == 0
    bn.eval()
    assert bn(chainrule.ones(1, 3)).shape == (1, 3)  # fine in evaluation
    with pytest.raises(ValueError, match="expected 4D"):
        nn.BatchNorm2d(3)(chainrule.ones(2, 3))
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=2.0)


def test_batchnorm_reset():
    bn = nn.BatchNorm1d(2)
    bn(chainrule.randn(4, 2))
    nn.init.normal_(bn.weight)
    bn.reset_parameters()
    assert bn.running_var.tolist() == [1.0, 1.0] and bn.num_batches_tracked.item() == 0
    assert bn.weight.tolist() == [1.0, 1.0] and bn.bias.tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- activations
def test_softmax_without_dim_warns_and_picks_pytorch_dim():
    x = chainrule.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = nn.Softmax()(x)
    np.testing.assert_allclose(y.sum(1).numpy(), 1, rtol=1e-6)
    with pytest.warns(UserWarning):
        y1 = nn.LogSoftmax()(chainrule.randn(4))
    np.testing.assert_allclose(y1.exp().sum().item(), 1, rtol=1e-6)


def test_inplace_activation_refuses_leaf_and_bad_args():
    with pytest.raises(GraphError, match="ReLU\\(inplace=True\\)"):
        nn.ReLU(inplace=True)(chainrule.ones(2, requires_grad=True))
    x = chainrule.tensor([-1.0, 2.0])
    assert nn.ReLU(inplace=True)(x) is x and x.tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="max_val"):
        nn.Hardtanh(1.0, -1.0)


# ---------------------------------------------------------------- losses
def test_cross_entropy_stable_for_logits_of_1e4():
    x = chainrule.tensor([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]], requires_grad=True)
    t = chainrule.tensor([2, 0])
    loss = nn.CrossEntropyLoss(reduction="none")(x, t)
    np.testing.assert_allclose(loss.detach().numpy(), [2e4, math.log(2)], rtol=1e-6)
    nn.CrossEntropyLoss()(x, t).backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, [[0.5, 0, -0.5], [-0.25, 0.25, 0]], atol=1e-7)


def test_loss_argument_errors():
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="batchmean"):
        nn.KLDivLoss(reduction="bad")
    assert nn.KLDivLoss(reduction="batchmean").reduction == "batchmean"
    with pytest.raises(ValueError, match="reduction"):
        nn.L1Loss(reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(TypeError, match="weight must be a Tensor"):
        nn.CrossEntropyLoss(weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="delta"):
        nn.HuberLoss(delta=0.0)
    with pytest.raises(ShapeError, match="shape"):
        nn.MSELoss()(chainrule.ones(3), chainrule.ones(4))
    with pytest.raises(ShapeError, match="expected target of shape"):
        nn.CrossEntropyLoss()(chainrule.ones(3, 4), chainrule.tensor([0, 1]))
    with pytest.raises(IndexError, match="out of bounds"):
        nn.NLLLoss()(chainrule.ones(2, 4), chainrule.tensor([0, 4]))


def test_loss_weights_are_buffers_that_follow_dtype():
    loss = nn.CrossEntropyLoss(weight=chainrule.tensor([1.0, 2.0]))
    assert list(loss.state_dict()) == ["weight"]
    loss.double()
    assert loss.weight.dtype == chainrule.float64
    bce = nn.BCEWithLogitsLoss(pos_weight=chainrule.tensor([3.0]))
    assert [n for n, _ in bce.named_buffers()] == ["pos_weight"]


# ---------------------------------------------------------------- the docs' residual block
class ResidualBlock(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def test_residual_block_trains():
    _ = chainrule.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), ResidualBlock(16, 32), ResidualBlock(16, 32),
                          nn.Linear(16, 3))
    x = chainrule.randn(64, 4)
    y = chainrule.tensor((x.numpy()[:, 0] > 0).astype(np.int64) + (x.numpy()[:, 1] > 0))
    loss_fn = nn.CrossEntropyLoss()
    first = None
    for _ in range(60):
        loss = loss_fn(model(x), y)
        first = first if first is not None else loss.item()
        model.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        with chainrule.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    assert loss.item() < 0.5 * first
