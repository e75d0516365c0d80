"""Finite-difference checks (float64) of small models' losses with respect to their
parameters, first and second order, and the runnable examples in the nn docstrings."""

import doctest
import importlib

import pytest

import chainrule
from chainrule import nn
from chainrule.testing import gradcheck, gradgradcheck


def loss_of_params(model, loss_fn, *inputs):
    """f(*params) -> loss of ``model`` run with the given tensors in place of its parameters
    (swapped into the registry for the call, so the graph runs through them)."""
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    slots = []
    for n in names:
        path, _, attr = n.rpartition(".")
        slots.append((model.get_submodule(path), attr))

    def f(*ps):
        for (mod, attr), p in zip(slots, ps):
            mod._parameters[attr] = p
            mod.__dict__[attr] = p
        try:
            return loss_fn(model(*inputs[:-1]), inputs[-1])
        finally:
            for (mod, attr), p0 in zip(slots, params):
                mod._parameters[attr] = p0
                mod.__dict__[attr] = p0

    return f, params


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)  # (a padding row has, by design, no gradient)
        self.norm = nn.LayerNorm(4)
        self.fc1 = nn.Linear(8, 6)
        self.bn = nn.BatchNorm1d(6)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(6, 3)

    def forward(self, idx):
        h = self.norm(self.emb(idx)).flatten(1)  # (N, 2, 4) -> (N, 8)
        return self.fc2(self.act(self.bn(self.fc1(h))))


@pytest.mark.parametrize("train", [True, False])
def test_gradcheck_embedding_norm_batchnorm_model(train):
    _ = chainrule.manual_seed(0)
    model = Tower().double().train(train)
    with chainrule.no_grad():
        model.bn(chainrule.randn(16, 6, dtype=chainrule.float64))  # non-trivial running stats
    for p in (model.norm.weight, model.norm.bias, model.bn.weight, model.bn.bias):
        nn.init.normal_(p)
    idx = chainrule.tensor([[1, 2], [0, 3], [4, 4], [6, 5], [2, 0]])
    y = chainrule.tensor([0, 2, 1, 1, 2])
    loss = nn.CrossEntropyLoss(weight=chainrule.tensor([1.0, 2.0, 0.5], dtype=chainrule.float64),
                               label_smoothing=0.1)
    f, params = loss_of_params(model, loss, idx, y)
    assert gradcheck(f, params, n_directions=3)


def test_gradcheck_regression_model():
    _ = chainrule.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.ELU(), nn.RMSNorm(5), nn.Linear(5, 5),
                          nn.Softplus(), nn.Linear(5, 2)).double()
    nn.init.uniform_(model[2].weight, 0.5, 1.5)
    x = chainrule.randn(6, 3, dtype=chainrule.float64)
    y = chainrule.randn(6, 2, dtype=chainrule.float64)
    for loss in (nn.MSELoss(), nn.HuberLoss(delta=0.5), nn.SmoothL1Loss(reduction="sum")):
        f, params = loss_of_params(model, loss, x, y)
        assert gradcheck(f, params)


def test_gradcheck_bce_with_pos_weight_and_bilinear():
    _ = chainrule.manual_seed(2)

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.bil = nn.Bilinear(3, 2, 4)

        def forward(self, xy):
            return self.bil(xy[:, :3], xy[:, 3:])

    model = Pair().double()
    xy = chainrule.randn(5, 5, dtype=chainrule.float64)
    t = chainrule.rand(5, 4, dtype=chainrule.float64)
    loss = nn.BCEWithLogitsLoss(pos_weight=chainrule.tensor([1.0, 2.0, 0.5, 3.0],
                                                            dtype=chainrule.float64))
    f, params = loss_of_params(model, loss, xy, t)
    assert gradcheck(f, params)


def test_gradgradcheck_mlp_parameters():
    _ = chainrule.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.LogSoftmax(dim=1))
    model.double()
    x = chainrule.randn(4, 3, dtype=chainrule.float64)
    y = chainrule.tensor([0, 1, 1, 0])
    f, params = loss_of_params(model, nn.NLLLoss(), x, y)
    assert gradgradcheck(f, params)


def test_gradcheck_detects_a_wrong_gradient():
    # the check can fail: the padding row of an Embedding is used in the forward pass but,
    # by design, gets no gradient, which finite differences notice
    model = nn.Embedding(3, 2, padding_idx=0).double()
    f, params = loss_of_params(model, lambda out, _: out.sum(), chainrule.tensor([0, 1]),
                               None)
    with pytest.raises(AssertionError, match="finite differences"):
        gradcheck(f, params)


MODULES = ["module", "parameter", "container", "linear", "dropout", "embedding", "norm",
           "activation", "loss", "init", "functional", "utils", "utils.clip_grad",
           "utils.convert_parameters"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(f"chainrule.nn.{name}")
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
    # the package docstring too
    if name == "module":
        assert doctest.testmod(nn).failed == 0
