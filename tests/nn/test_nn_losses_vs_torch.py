"""Loss modules against PyTorch: forward and gradients (float64), every reduction."""

import numpy as np
import pytest

import chainrule
from chainrule import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

TOL = dict(rtol=1e-10, atol=1e-12)
REDUCTIONS = ["none", "mean", "sum"]


def _pair(a, rg):
    a = np.asarray(a)
    rg = rg and a.dtype.kind == "f"
    return chainrule.tensor(a, requires_grad=rg), torch.tensor(a, requires_grad=rg)


def compare(loss, tloss, inp, target, *, target_grad=False, seed=0):
    x, tx = _pair(inp, True)
    t, tt = _pair(target, target_grad)
    y, ty = loss(x, t), tloss(tx, tt)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), **TOL)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    y.backward(chainrule.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), **TOL)
    if target_grad:
        np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), **TOL)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses(reduction):
    x, y = rand(4, 5) * 2, rand(4, 5, seed=1)
    compare(nn.MSELoss(reduction=reduction), tnn.MSELoss(reduction=reduction), x, y,
            target_grad=True)
    compare(nn.L1Loss(reduction=reduction), tnn.L1Loss(reduction=reduction), x, y,
            target_grad=True)
    for beta in (1.0, 0.5, 0.0):
        compare(nn.SmoothL1Loss(reduction=reduction, beta=beta),
                tnn.SmoothL1Loss(reduction=reduction, beta=beta), x, y, target_grad=True)
    for delta in (1.0, 0.3, 2.5):
        compare(nn.HuberLoss(reduction, delta), tnn.HuberLoss(reduction, delta), x, y,
                target_grad=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_indices(reduction):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 4)) * 3
    target = np.array([0, 3, 1, 1, 2, 0])
    w = np.array([0.5, 2.0, 1.0, 0.25])
    ignored = np.array([0, -100, 1, 1, -100, 3])
    cases = [
        ({}, target),
        ({"weight": w}, target),
        ({"ignore_index": -100}, ignored),
        ({"weight": w, "ignore_index": -100}, ignored),
        ({"ignore_index": 1}, target),
        ({"label_smoothing": 0.1}, target),
        ({"label_smoothing": 0.2, "weight": w}, target),
        ({"label_smoothing": 0.3, "weight": w, "ignore_index": -100}, ignored),
    ]
    for kw, tgt in cases:
        ckw = {k: (chainrule.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        compare(nn.CrossEntropyLoss(reduction=reduction, **ckw),
                tnn.CrossEntropyLoss(reduction=reduction, **tkw), logits, tgt)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_and_unbatched(reduction):
    rng = np.random.default_rng(3)
    compare(nn.CrossEntropyLoss(reduction=reduction), tnn.CrossEntropyLoss(reduction=reduction),
            rng.standard_normal((2, 3, 4, 5)), rng.integers(0, 3, (2, 4, 5)))
    compare(nn.CrossEntropyLoss(reduction=reduction), tnn.CrossEntropyLoss(reduction=reduction),
            rng.standard_normal(5), np.array(2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_probabilities(reduction):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 4))
    probs = rng.random((5, 4))
    probs /= probs.sum(1, keepdims=True)
    w = np.array([1.0, 0.5, 2.0, 1.5])
    for kw in ({}, {"label_smoothing": 0.15}, {"weight": w}, {"weight": w,
                                                              "label_smoothing": 0.1}):
        ckw = {k: (chainrule.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        tkw = {k: (torch.tensor(v) if k == "weight" else v) for k, v in kw.items()}
        compare(nn.CrossEntropyLoss(reduction=reduction, **ckw),
                tnn.CrossEntropyLoss(reduction=reduction, **tkw), logits, probs,
                target_grad=True)


def test_cross_entropy_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4], [-1e4, -1e4, -1e4]])
    target = np.array([1, 2, 0])
    compare(nn.CrossEntropyLoss(), tnn.CrossEntropyLoss(), logits, target)
    compare(nn.CrossEntropyLoss(reduction="none"), tnn.CrossEntropyLoss(reduction="none"),
            logits, target)
    # float32 as well: finite and exact
    x = chainrule.tensor(logits.astype(np.float32), requires_grad=True)
    loss = nn.CrossEntropyLoss(reduction="none")(x, chainrule.tensor(target))
    np.testing.assert_allclose(loss.detach().numpy(), [1e4, np.log(2), np.log(3)], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(reduction):
    rng = np.random.default_rng(5)
    logp = np.log(rng.dirichlet(np.ones(4), size=6))
    target = np.array([0, 3, 1, -100, 2, 0])
    w = np.array([0.5, 2.0, 1.0, 0.25])
    compare(nn.NLLLoss(reduction=reduction), tnn.NLLLoss(reduction=reduction), logp, target)
    compare(nn.NLLLoss(chainrule.tensor(w), reduction=reduction),
            tnn.NLLLoss(torch.tensor(w), reduction=reduction), logp, target)
    compare(nn.NLLLoss(reduction=reduction, ignore_index=3),
            tnn.NLLLoss(reduction=reduction, ignore_index=3), logp, np.abs(target) % 4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_losses(reduction):
    rng = np.random.default_rng(6)
    p = rng.uniform(0.05, 0.95, (4, 3))
    t = rng.uniform(0, 1, (4, 3))
    w = rng.uniform(0.5, 2, (4, 3))
    compare(nn.BCELoss(reduction=reduction), tnn.BCELoss(reduction=reduction), p, t)
    compare(nn.BCELoss(chainrule.tensor(w), reduction=reduction),
            tnn.BCELoss(torch.tensor(w), reduction=reduction), p, t)
    logits = rng.standard_normal((4, 3)) * 4
    pw = np.array([1.0, 3.0, 0.5])
    compare(nn.BCEWithLogitsLoss(reduction=reduction),
            tnn.BCEWithLogitsLoss(reduction=reduction), logits, t, target_grad=True)
    compare(nn.BCEWithLogitsLoss(chainrule.tensor(w), reduction=reduction,
                                 pos_weight=chainrule.tensor(pw)),
            tnn.BCEWithLogitsLoss(torch.tensor(w), reduction=reduction,
                                  pos_weight=torch.tensor(pw)), logits, t)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # log(0), clamped after
def test_bce_edges():
    # probabilities exactly 0 and 1: logs clamped at -100, as in PyTorch
    p, t = np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0])
    y = nn.BCELoss(reduction="none")(chainrule.tensor(p), chainrule.tensor(t))
    ty = tnn.BCELoss(reduction="none")(torch.tensor(p), torch.tensor(t))
    np.testing.assert_allclose(y.numpy(), ty.numpy())
    # huge logits stay finite
    logits = np.array([200.0, -200.0, 200.0, -200.0])
    compare(nn.BCEWithLogitsLoss(reduction="none"), tnn.BCEWithLogitsLoss(reduction="none"),
            logits, t)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # PyTorch's note
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
def test_kl_div(reduction):
    rng = np.random.default_rng(7)
    logq = np.log(rng.dirichlet(np.ones(5), size=3))
    p = rng.dirichlet(np.ones(5), size=3)
    p[0, 1] = 0.0  # zero target probability contributes 0
    p[0] /= p[0].sum()
    compare(nn.KLDivLoss(reduction=reduction), tnn.KLDivLoss(reduction=reduction), logq, p)
    logp = np.log(rng.dirichlet(np.ones(5), size=3))
    compare(nn.KLDivLoss(reduction=reduction, log_target=True),
            tnn.KLDivLoss(reduction=reduction, log_target=True), logq, logp, target_grad=True)
