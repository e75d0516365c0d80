"""nn.init: distributions (bounds, moments) with fixed seeds, fans, gains, errors."""

import math

import numpy as np
import pytest

import chainrule
from chainrule import nn
from chainrule.nn import init


def gen(seed=0):
    return chainrule.Generator().manual_seed(seed)


def test_calculate_gain():
    for name in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "sigmoid"):
        assert init.calculate_gain(name) == 1
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("selu") == 0.75
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01 ** 2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("leaky_relu", 1) == 1.0
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", "x")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_fans_for_linear_and_conv_weights():
    assert init._calculate_fan_in_and_fan_out(chainrule.empty(7, 5)) == (5, 7)
    assert init._calculate_fan_in_and_fan_out(chainrule.empty(16, 3, 5, 5)) == (75, 400)
    assert init._calculate_fan_in_and_fan_out(chainrule.empty(8, 4, 3)) == (12, 24)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(chainrule.empty(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(chainrule.empty(3, 3), mode="fan_avg")


def _stats(t):
    a = t.numpy().astype(np.float64)
    return a.min(), a.max(), a.mean(), a.std()


def test_uniform_and_normal_moments():
    w = init.uniform_(chainrule.empty(200, 500), -2.0, 3.0, generator=gen())
    lo, hi, mean, std = _stats(w)
    assert -2.0 <= lo and hi <= 3.0
    assert abs(mean - 0.5) < 0.02 and abs(std - 5 / math.sqrt(12)) < 0.01
    w = init.normal_(chainrule.empty(200, 500), 1.0, 0.5, generator=gen())
    _, _, mean, std = _stats(w)
    assert abs(mean - 1.0) < 0.005 and abs(std - 0.5) < 0.005


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_xavier(shape):
    w = chainrule.empty(*shape)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(w)
    init.xavier_uniform_(w, gain=2.0, generator=gen(1))
    bound = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    lo, hi, _, std = _stats(w)
    assert -bound <= lo and hi <= bound and hi > 0.99 * bound
    assert abs(std / (bound / math.sqrt(3)) - 1) < 0.01
    init.xavier_normal_(w, generator=gen(2))
    _, _, mean, std = _stats(w)
    assert abs(std / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.01 and abs(mean) < 0.01


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity,a", [("relu", 0), ("leaky_relu", 0.2), ("tanh", 0),
                                            ("leaky_relu", math.sqrt(5))])
def test_kaiming(mode, nonlinearity, a):
    w = chainrule.empty(256, 128, 3)
    fan = init._calculate_correct_fan(w, mode)
    gain = init.calculate_gain(nonlinearity, a)
    init.kaiming_uniform_(w, a=a, mode=mode, nonlinearity=nonlinearity, generator=gen(3))
    bound = gain * math.sqrt(3 / fan)
    lo, hi, _, std = _stats(w)
    assert -bound <= lo and hi <= bound
    assert abs(std / (gain / math.sqrt(fan)) - 1) < 0.01
    init.kaiming_normal_(w, a=a, mode=mode, nonlinearity=nonlinearity, generator=gen(4))
    _, _, mean, std = _stats(w)
    assert abs(std / (gain / math.sqrt(fan)) - 1) < 0.01 and abs(mean) < 0.05 * std


def test_kaiming_zero_element_warns_and_returns():
    w = chainrule.empty(0, 3)
    with pytest.warns(UserWarning, match="zero-element"):
        assert init.kaiming_uniform_(w) is w


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (5, 2, 3)])
def test_orthogonal(shape):
    w = chainrule.empty(*shape, dtype=chainrule.float64)
    init.orthogonal_(w, gain=1.5, generator=gen(5))
    m = w.numpy().reshape(shape[0], -1)
    if m.shape[0] <= m.shape[1]:
        np.testing.assert_allclose(m @ m.T, 2.25 * np.eye(m.shape[0]), atol=1e-12)
    else:
        np.testing.assert_allclose(m.T @ m, 2.25 * np.eye(m.shape[1]), atol=1e-12)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(chainrule.empty(3))


def test_trunc_normal():
    w = init.trunc_normal_(chainrule.empty(400, 500), mean=0.5, std=2.0, a=-1.0, b=3.0,
                           generator=gen(6))
    lo, hi, mean, std = _stats(w)
    assert -1.0 <= lo and hi <= 3.0 and lo < -0.99 and hi > 2.99
    # moments of N(0.5, 2^2) truncated to [-1, 3]: alpha = -0.75, beta = 1.25
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    al, be = -0.75, 1.25
    zz = cdf(be) - cdf(al)
    exp_mean = 0.5 + 2.0 * (phi(al) - phi(be)) / zz
    exp_var = 4.0 * (1 + (al * phi(al) - be * phi(be)) / zz - ((phi(al) - phi(be)) / zz) ** 2)
    assert abs(mean - exp_mean) < 0.01
    assert abs(std - math.sqrt(exp_var)) < 0.01
    # default: standard normal truncated to [-2, 2]; a far tail interval stays inside too
    w = init.trunc_normal_(chainrule.empty(10000), generator=gen(7))
    assert w.abs().max().item() <= 2.0
    with pytest.warns(UserWarning, match="more than 2 std"):
        w = init.trunc_normal_(chainrule.empty(1000, dtype=chainrule.float64), a=4.0, b=4.5,
                               generator=gen(8))
    assert w.min().item() >= 4.0 and w.max().item() <= 4.5
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(chainrule.empty(3), a=1.0, b=0.0)


def test_ndtri_accuracy():
    ndtri = pytest.importorskip("scipy.special").ndtri

    p = np.concatenate([np.linspace(1e-10, 1 - 1e-10, 2001), [1e-300, 0.02425, 0.97575]])
    np.testing.assert_allclose(init._ndtri(p), ndtri(p), rtol=2e-9, atol=1e-9)


def test_constant_eye_dirac_sparse():
    w = chainrule.empty(2, 3)
    assert init.constant_(w, 2.5) is w and w.tolist() == [[2.5] * 3] * 2
    assert init.zeros_(w).abs().sum().item() == 0
    assert init.ones_(w).sum().item() == 6
    np.testing.assert_array_equal(init.eye_(chainrule.empty(3, 2)).numpy(), np.eye(3, 2))
    with pytest.raises(ValueError, match="2 dimensions"):
        init.eye_(chainrule.empty(2, 2, 2))
    d = init.dirac_(chainrule.empty(4, 2, 3, 3), groups=2)
    a = d.numpy()
    assert a.sum() == 4 and a[0, 0, 1, 1] == 1 and a[1, 1, 1, 1] == 1
    assert a[2, 0, 1, 1] == 1 and a[3, 1, 1, 1] == 1
    with pytest.raises(ValueError, match="divisible"):
        init.dirac_(chainrule.empty(3, 2, 3), groups=2)
    s = init.sparse_(chainrule.empty(20, 5), sparsity=0.3, std=0.5, generator=gen(9))
    zeros = (s.numpy() == 0).sum(0)
    assert zeros.tolist() == [6] * 5


def test_init_is_in_place_outside_autograd_and_reproducible():
    lin = nn.Linear(50, 40)
    w = lin.weight
    v0 = w._version
    init.kaiming_normal_(w, generator=gen(10))  # a leaf requiring grad, grad mode on
    assert lin.weight is w and w.requires_grad and w.is_leaf and w.grad_fn is None
    assert w._version > v0
    a = w.numpy(force=True).copy()
    init.kaiming_normal_(w, generator=gen(10))
    np.testing.assert_array_equal(w.numpy(force=True), a)
    _ = chainrule.manual_seed(11)
    b = init.normal_(chainrule.empty(5)).tolist()
    _ = chainrule.manual_seed(11)
    assert init.normal_(chainrule.empty(5)).tolist() == b
    with pytest.raises(TypeError, match="expected a Tensor"):
        init.normal_(np.zeros(3))
