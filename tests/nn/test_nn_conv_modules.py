"""Conv/pool/upsample modules and GroupNorm: shapes, reprs, init, and agreement with PyTorch
(weights loaded through state_dict, outputs and gradients compared)."""

import numpy as np
import pytest

import chainrule
from chainrule import nn
from chainrule.testing import gradcheck, gradgradcheck


def test_shapes_and_state_dict_keys():
    m = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(6, 16, 5), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(16, 10))
    y = m(chainrule.randn(3, 1, 28, 28))
    assert y.shape == (3, 10)
    assert list(m.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight",
                                    "7.bias"]
    t = nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, bias=False)
    assert t.weight.shape == (4, 2, 3, 3) and t.bias is None
    assert t(chainrule.ones(1, 4, 5, 5)).shape == (1, 2, 12, 12)


def test_init_bounds_follow_pytorch():
    c = nn.Conv2d(3, 8, 3)
    bound = 1 / np.sqrt(3 * 9)
    assert float(c.weight.abs().max()) <= bound + 1e-7
    assert float(c.bias.abs().max()) <= bound + 1e-7


def test_group_norm_normalises_groups_and_is_differentiable():
    x = chainrule.randn(2, 6, 4, dtype=chainrule.float64)
    y = nn.GroupNorm(3, 6).double()(x)
    g = y.detach().numpy().reshape(2, 3, -1)
    assert np.allclose(g.mean(-1), 0, atol=1e-12) and np.allclose(g.var(-1), 1, atol=1e-3)
    w = chainrule.randn(6, dtype=chainrule.float64, requires_grad=True)
    x.requires_grad_()
    f = lambda x, w: nn.functional.group_norm(x, 3, w, w * 0.5)
    assert gradcheck(f, (x, w)) and gradgradcheck(f, (x, w))
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(4, 6)


@pytest.mark.parametrize("make", [
    lambda M: M.Conv1d(3, 4, 3, stride=2, padding=1),
    lambda M: M.Conv2d(2, 4, 3, padding="same", dilation=2, groups=2),
    lambda M: M.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
    lambda M: M.GroupNorm(2, 4),
])
def test_modules_match_torch(make):
    torch = pytest.importorskip("torch")
    tm = make(torch.nn).double()
    cm = make(nn).double()
    cm.load_state_dict({k: chainrule.tensor(v.detach().numpy()) for k, v in
                        tm.state_dict().items()})
    nd = 3 if isinstance(tm, torch.nn.Conv1d) else 4
    shape = (2, tm.weight.shape[1] * getattr(tm, "groups", 1) if nd == 3 else 2, 7) \
        if nd == 3 else None
    if isinstance(tm, torch.nn.ConvTranspose2d):
        shape = (2, 2, 5, 5)
    elif isinstance(tm, torch.nn.Conv2d):
        shape = (2, 2, 9, 9)
    elif isinstance(tm, torch.nn.GroupNorm):
        shape = (2, 4, 3, 3)
    x = np.random.default_rng(0).standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    cx = chainrule.tensor(x, requires_grad=True)
    ty, cy = tm(tx), cm(cx)
    assert np.allclose(ty.detach().numpy(), cy.detach().numpy(), atol=1e-12)
    ty.square().sum().backward()
    cy.square().sum().backward()
    assert np.allclose(tx.grad.numpy(), cx.grad.numpy(), atol=1e-10)
    for (tn, tp), (cn, cp) in zip(tm.named_parameters(), cm.named_parameters()):
        assert tn == cn and np.allclose(tp.grad.numpy(), cp.grad.numpy(), atol=1e-10)


def test_reprs_match_pytorch():
    torch = pytest.importorskip("torch")
    for make in (lambda M: M.Conv2d(1, 6, 5, padding=2), lambda M: M.Conv1d(2, 3, 3, bias=False),
                 lambda M: M.ConvTranspose2d(4, 2, 2, stride=2), lambda M: M.GroupNorm(2, 4),
                 lambda M: M.Conv2d(4, 4, 3, groups=2, dilation=2)):
        assert repr(make(nn)) == repr(make(torch.nn))
