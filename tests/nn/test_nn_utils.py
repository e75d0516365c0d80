"""nn.utils: gradient clipping (against PyTorch where installed) and parameter vectors."""

import math

import numpy as np
import pytest

import chainrule
from chainrule import nn
from chainrule.errors import ShapeError


def _params_with_grads(dtype=np.float64, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 2), (1,)]
    ps, grads = [], []
    for s in shapes:
        p = chainrule.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
        g = (rng.standard_normal(s) * scale).astype(dtype)
        p.grad = chainrule.tensor(g)
        ps.append(p)
        grads.append(g)
    return ps, grads


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, 0.5])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_against_formula(norm_type, max_norm):
    ps, grads = _params_with_grads()
    flat = np.concatenate([g.ravel() for g in grads])
    if norm_type == math.inf:
        expected = np.abs(flat).max()
    else:
        expected = (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    total = nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    assert isinstance(total, chainrule.Tensor) and total.shape == ()
    np.testing.assert_allclose(total.item(), expected, rtol=1e-12)
    coef = min(max_norm / (expected + 1e-6), 1.0)
    for p, g in zip(ps, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-12)


def test_clip_grad_norm_edge_cases():
    # no gradients at all: total norm 0, nothing to do
    p = chainrule.ones(2, requires_grad=True)
    assert nn.utils.clip_grad_norm_([p], 1.0).item() == 0.0
    # a single tensor is accepted; params without grad are skipped
    ps, _ = _params_with_grads(scale=10.0)
    q = chainrule.ones(3, requires_grad=True)
    total = nn.utils.clip_grad_norm_(ps + [q], 1.0)
    assert q.grad is None and total.item() > 1.0
    assert nn.utils.get_total_norm([pp.grad for pp in ps]).item() == pytest.approx(1.0, 1e-5)
    single = chainrule.ones(4, requires_grad=True)
    single.grad = chainrule.full((4,), 2.0)
    assert nn.utils.clip_grad_norm_(single, 1.0).item() == 4.0
    # a generator of parameters is consumed once and still clipped
    m = nn.Linear(3, 2)
    m(chainrule.ones(1, 3) * 100).sum().backward()
    nn.utils.clip_grad_norm_(m.parameters(), 0.1)
    assert nn.utils.get_total_norm([p.grad for p in m.parameters()]).item() <= 0.1 + 1e-6
    with pytest.raises(TypeError, match="Tensors"):
        nn.utils.clip_grad_norm_([1.0], 1.0)


def test_clip_grad_norm_nonfinite():
    ps, _ = _params_with_grads()
    ps[1].grad = chainrule.tensor([1.0, math.nan, 0.0, 2.0], dtype=chainrule.float64)
    before = ps[0].grad.numpy().copy()
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(ps[0].grad.numpy(), before)  # untouched
    total = nn.utils.clip_grad_norm_(ps, 1.0)
    assert math.isnan(total.item())
    ps[1].grad = chainrule.tensor([math.inf, 0.0, 0.0, 0.0], dtype=chainrule.float64)
    with pytest.raises(RuntimeError, match="order inf"):
        nn.utils.clip_grad_norm_(ps, 1.0, norm_type="inf", error_if_nonfinite=True)


def test_clip_grad_value():
    ps, grads = _params_with_grads(scale=3.0)
    versions = [p.grad._version for p in ps]
    assert nn.utils.clip_grad_value_(ps, 1.5) is None
    for p, g, v in zip(ps, grads, versions):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -1.5, 1.5))
        assert p.grad._version > v


def test_clipping_records_nothing():
    ps, _ = _params_with_grads()
    nn.utils.clip_grad_norm_(ps, 0.1)
    nn.utils.clip_grad_value_(ps, 0.01)
    assert all(p.grad.grad_fn is None and not p.grad.requires_grad for p in ps)


def test_parameters_to_vector_and_back():
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    v = nn.utils.parameters_to_vector(m.parameters())
    assert v.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    np.testing.assert_array_equal(v[:12].detach().numpy(), m[0].weight.detach().numpy().ravel())
    # differentiable, as in PyTorch
    (v * v).sum().backward()
    np.testing.assert_allclose(m[1].bias.grad.numpy(), 2 * m[1].bias.detach().numpy())
    new = chainrule.arange(v.numel(), dtype=chainrule.float32)
    w_obj = m[0].weight
    nn.utils.vector_to_parameters(new, m.parameters())
    assert m[0].weight is w_obj and w_obj.requires_grad and w_obj.is_leaf
    np.testing.assert_array_equal(nn.utils.parameters_to_vector(m.parameters())
                                  .detach().numpy(), new.numpy())
    with pytest.raises(ShapeError, match="has 5 elements but the parameters have 26"):
        nn.utils.vector_to_parameters(chainrule.ones(5), m.parameters())
    with pytest.raises(TypeError, match="Tensor"):
        nn.utils.vector_to_parameters(np.ones(26), m.parameters())
    with pytest.raises(ShapeError, match="1-D"):
        nn.utils.vector_to_parameters(chainrule.ones(26, 1), m.parameters())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_against_torch(norm_type, dtype):
    torch = pytest.importorskip("torch")
    ps, grads = _params_with_grads(dtype=dtype, scale=5.0, seed=3)
    tps = []
    for p, g in zip(ps, grads):
        tp = torch.tensor(p.detach().numpy(), requires_grad=True)
        tp.grad = torch.tensor(g)
        tps.append(tp)
    total = nn.utils.clip_grad_norm_(ps, 2.0, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, 2.0, norm_type=norm_type)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    assert total.dtype == (chainrule.float64 if dtype == np.float64 else chainrule.float32)
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=rtol)
    for p, tp in zip(ps, tps):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=1e-7)
    torch_value = [tp.grad.clone() for tp in tps]
    nn.utils.clip_grad_value_(ps, 0.1)
    torch.nn.utils.clip_grad_value_(tps, 0.1)
    for p, tp, before in zip(ps, tps, torch_value):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=1e-7)
        assert not np.array_equal(before.numpy(), tp.grad.numpy()) or \
            np.abs(before.numpy()).max() <= 0.1
