"""GradientMonitor: each recorded statistic against values worked out by hand, step
boundaries, bounded history, and hook removal."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule
from chainrule import nn, optim
from chainrule.diagnostics import GradientMonitor, Thresholds


def _set(param, values):
    param._data[...] = np.asarray(values, dtype=param._data.dtype)


def _hand_net():
    """Linear(3, 2) -> ReLU -> Linear(2, 1) with weights chosen so that everything below can
    be worked out by hand for x = [[1, 1, 1], [2, 0, 1]]:

    h = x W1^T = [[3, -1], [2, -2]]; relu(h) = [[3, 0], [2, 0]] (unit 1 dead);
    out = relu(h) W2^T + 1 = [[7], [5]]; loss = out.sum().
    d loss/d out = [[1], [1]]; d/d relu(h) = [[2, 5], [2, 5]]; d/d h = [[2, 0], [2, 0]].
    dW2 = [[5, 0]], db2 = [2]; dW1 = [[6, 2, 4], [0, 0, 0]], db1 = [4, 0].
    """
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    _set(net[0].weight, [[1, 2, 0], [-1, 0, 0]])
    _set(net[0].bias, [0, 0])
    _set(net[2].weight, [[2, 5]])
    _set(net[2].bias, [1])
    x = chainrule.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0]])
    return net, x


def _col(report, metric, path, step=0):
    i = [layer.path for layer in report.layers].index(path)
    return report.layer_stats[metric][step, i]


def _pcol(report, metric, name, step=0):
    j = [p.name for p in report.params].index(name)
    return report.param_stats[metric][step, j]


def test_activation_statistics_by_hand():
    net, x = _hand_net()
    with GradientMonitor(net) as mon:
        net(x).sum().backward()
    r = mon.report()
    assert [(layer.path, layer.type, layer.kind, layer.weight) for layer in r.layers] == [
        ("0", "Linear", None, True), ("1", "ReLU", "relu", False), ("2", "Linear", None, True)]
    # layer 0 outputs 3, -1, 2, -2: mean 0.5, variance (2.5^2 + 1.5^2 + 1.5^2 + 2.5^2) / 4
    assert _col(r, "act_mean", "0") == pytest.approx(0.5)
    assert _col(r, "act_std", "0") == pytest.approx(math.sqrt(17 / 4))
    # the ReLU outputs 3, 0, 2, 0: mean 1.25, variance 6.75 / 4; unit 1 is dead
    assert _col(r, "act_mean", "1") == pytest.approx(1.25)
    assert _col(r, "act_std", "1") == pytest.approx(math.sqrt(6.75 / 4))
    assert _col(r, "dead_fraction", "1") == 0.5
    assert np.isnan(_col(r, "dead_fraction", "0"))  # only measured on ReLU layers
    assert _col(r, "act_mean", "2") == pytest.approx(6.0)
    assert _col(r, "act_std", "2") == pytest.approx(1.0)
    for path in ("0", "1", "2"):
        assert _col(r, "act_nan", path) == 0 and _col(r, "act_inf", path) == 0


def test_gradient_norms_by_hand():
    net, x = _hand_net()
    with GradientMonitor(net) as mon:
        net(x).sum().backward()
    r = mon.report()
    assert _col(r, "grad_norm", "2") == pytest.approx(math.sqrt(2))
    assert _col(r, "grad_norm", "1") == pytest.approx(math.sqrt(58))
    assert _col(r, "grad_norm", "0") == pytest.approx(math.sqrt(8))
    assert _pcol(r, "grad_norm", "2.weight") == pytest.approx(5.0)
    assert _pcol(r, "grad_norm", "2.bias") == pytest.approx(2.0)
    assert _pcol(r, "grad_norm", "0.weight") == pytest.approx(math.sqrt(56))
    assert _pcol(r, "grad_norm", "0.bias") == pytest.approx(4.0)
    # the parameter figures are the norms of what backward accumulated
    for name, p in net.named_parameters():
        assert _pcol(r, "grad_norm", name) == pytest.approx(float(p.grad.norm()))
    assert r.gradient_ratio() == pytest.approx(math.sqrt(8) / math.sqrt(2))
    assert r.findings == []


@pytest.mark.parametrize("mode", ["wrapped", "explicit", "auto"])
def test_update_ratio_by_hand(mode):
    net, x = _hand_net()
    opt = optim.SGD(net.parameters(), lr=0.1)
    mon = GradientMonitor(net, optimizer=opt if mode == "wrapped" else None)
    net(x).sum().backward()
    opt.step()
    if mode == "auto":
        net(x)  # the next forward ends the step (no optimizer given, step() never called)
    else:
        mon.step()
    mon.remove()
    r = mon.report()
    # SGD moves each weight by lr * grad: ||dW|| / ||W|| = 0.1 * ||grad|| / ||W||
    assert _pcol(r, "update_ratio", "0.weight") == pytest.approx(0.1 * math.sqrt(56 / 6))
    assert _pcol(r, "update_ratio", "2.weight") == pytest.approx(0.1 * 5 / math.sqrt(29))
    assert _pcol(r, "weight_norm", "2.weight") == pytest.approx(math.sqrt(29))
    assert np.isnan(_pcol(r, "update_ratio", "0.bias"))  # zero weights: no ratio
    assert _pcol(r, "update_ratio", "2.bias") == pytest.approx(0.1 * 2 / 1)


def test_no_update_ratio_without_an_update():
    net, x = _hand_net()
    with GradientMonitor(net) as mon:
        net(x).sum().backward()
        mon.step()  # no optimizer step happened: weights unchanged, nothing recorded
    assert np.isnan(mon.report().param_stats["update_ratio"]).all()


def test_saturation_by_hand():
    lin = nn.Linear(1, 4)
    _set(lin.weight, [[-10.0], [0.0], [3.0], [10.0]])
    _set(lin.bias, [0, 0, 0, 0])
    x = chainrule.tensor([[1.0]])
    # tanh(-10, 0, 3, 10) = -1, 0, 0.995, 1: three of four beyond 0.99
    # sigmoid = 4.5e-5, 0.5, 0.953, 0.99995: two of four within 0.01 of 0 or 1
    for act, expected in ((nn.Tanh(), 0.75), (nn.Sigmoid(), 0.5)):
        net = nn.Sequential(lin, act)
        with GradientMonitor(net) as mon:
            net(x).sum().backward()
        r = mon.report()
        assert _col(r, "saturated_fraction", "1") == expected
        assert r.layers[1].kind == type(act).__name__.lower()


def test_nonfinite_counts_and_finding():
    net, _ = _hand_net()
    x = chainrule.tensor([[np.nan, 0.0, 0.0], [1.0, 1.0, 1.0]])
    with GradientMonitor(net) as mon:
        net(x).sum().backward()
    r = mon.report()
    assert _col(r, "act_nan", "0") == 2 and _col(r, "act_inf", "0") == 0
    assert _col(r, "act_mean", "0") == pytest.approx(1.0)  # over the finite values 3 and -1
    assert _col(r, "grad_nan", "0") == 0  # the gradient w.r.t. the output is finite
    assert _pcol(r, "grad_nan", "0.weight") > 0
    assert [(f.kind, f.layer, f.value) for f in r.findings] == [("nonfinite", "0", 2.0)]
    assert "'0' (Linear)" in r.findings[0].message and "detect_anomaly" in r.findings[0].message


def test_hooks_are_all_removed():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    opt = optim.Adam(net.parameters())
    before_step = opt.step
    mon = GradientMonitor(net, optimizer=opt)
    assert all(len(m._forward_hooks) == 1 for m in net.modules() if not list(m.children()))
    assert len(net._forward_pre_hooks) == 1
    assert all(len(p._hooks) == 1 for p in net.parameters())
    assert "step" in opt.__dict__
    out = net(chainrule.randn(2, 3))  # a pending gradient hook on each layer's output
    assert out._node.pre_hooks
    mon.remove()
    assert not out._node.pre_hooks
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert all(not p._hooks for p in net.parameters())
    assert "step" not in opt.__dict__ and opt.step == before_step
    out.sum().backward()  # nothing recorded after removal
    net(chainrule.randn(2, 3)).sum().backward()
    assert len(mon.report().steps) == 1 and np.isnan(mon.report().layer_stats["grad_norm"]).all()
    mon.remove()  # a second call does nothing
    mon.step()  # nor does step() after removal
    assert mon.current_step == 0


def test_context_manager_removes_on_exception():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="boom"):
        with GradientMonitor(net) as mon:
            assert mon.attached
            raise RuntimeError("boom")
    assert not mon.attached and not net[0]._forward_hooks and not net._forward_pre_hooks


def test_steps_with_optimizer_and_explicit_step():
    torch_like = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = optim.SGD(torch_like.parameters(), lr=0.01)
    x, y = chainrule.randn(16, 4), chainrule.randint(0, 3, (16,))
    with GradientMonitor(torch_like, optimizer=opt) as mon:
        for _ in range(4):
            opt.zero_grad()
            nn.functional.cross_entropy(torch_like(x), y).backward()
            opt.step()
            mon.step()
    r = mon.report()
    assert r.steps.tolist() == [0, 1, 2, 3]
    assert np.isfinite(r.param_stats["update_ratio"]).all()
    assert np.isfinite(r.layer_stats["grad_norm"]).all()


def test_auto_steps_without_step_calls():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = optim.SGD(net.parameters(), lr=0.01)
    x = chainrule.randn(8, 4)
    with GradientMonitor(net, optimizer=opt) as mon:  # steps end at the forward after opt.step
        for _ in range(3):
            opt.zero_grad()
            net(x).sum().backward()
            opt.step()
    assert mon.report().steps.tolist() == [0, 1, 2]
    with GradientMonitor(net) as mon2:  # no optimizer: a forward after a backward starts a step
        for _ in range(3):
            net(x).sum().backward()
    assert mon2.report().steps.tolist() == [0, 1, 2]


def test_gradient_accumulation_stays_in_one_step():
    net = nn.Sequential(nn.Linear(4, 2))
    opt = optim.SGD(net.parameters(), lr=0.01)
    xs = [chainrule.randn(8, 4) for _ in range(3)]
    with GradientMonitor(net, optimizer=opt) as mon:
        for x in xs:  # three micro-batches, one optimizer step
            net(x).sum().backward()
        g = float(net[0].weight.grad.norm())
        opt.step()
        mon.step()
    r = mon.report()
    assert r.steps.tolist() == [0]
    # one layer called three times: its output statistics cover all 24 rows
    outs = np.concatenate([(x._data @ net[0].weight._data.T) for x in xs])
    assert outs.shape == (24, 2)
    # the weight gradient norm is the root-sum-square of the three contributions, which for
    # the all-ones upstream gradient of .sum() bounds the accumulated gradient's norm
    assert _pcol(r, "grad_norm", "0.weight") >= g - 1e-5


def test_shared_module_merges_calls():
    lin = nn.Linear(3, 3)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x))

    net = Twice()
    x = chainrule.randn(5, 3)
    with GradientMonitor(net) as mon:
        net(x).sum().backward()
    r = mon.report()
    h1 = x._data @ lin.weight._data.T + lin.bias._data
    h2 = h1 @ lin.weight._data.T + lin.bias._data
    both = np.concatenate([h1, h2]).astype(np.float64)
    assert _col(r, "act_mean", "lin") == pytest.approx(both.mean(), rel=1e-5)
    assert _col(r, "act_std", "lin") == pytest.approx(both.std(), rel=1e-5)
    # output gradients: ones for h2, ones @ W for h1
    g1 = np.ones((5, 3)) @ lin.weight._data.astype(np.float64)
    expected = math.sqrt(15 + (g1 ** 2).sum())
    assert _col(r, "grad_norm", "lin") == pytest.approx(expected, rel=1e-5)


def test_eval_and_no_grad_forwards_are_not_recorded():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with GradientMonitor(net) as mon:
        with chainrule.no_grad():
            net(chainrule.randn(3, 2))
        net.eval()
        net(chainrule.randn(3, 2))
        net.train()
    assert len(mon.report().steps) == 0
    assert "0 recorded steps" in mon.report().to_table()


def test_every_records_one_step_in_n():
    net = nn.Sequential(nn.Linear(2, 2))
    opt = optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt, every=3) as mon:
        for _ in range(7):
            opt.zero_grad()
            net(chainrule.randn(4, 2)).sum().backward()
            opt.step()
            mon.step()
    assert mon.report().steps.tolist() == [0, 3, 6]


def test_history_is_bounded_and_keeps_the_first_step():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    opt = optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt, max_history=4, sample_size=8) as mon:
        for _ in range(20):
            opt.zero_grad()
            net(chainrule.randn(4, 2)).sum().backward()
            opt.step()
            mon.step()
    steps = mon.report().steps.tolist()
    assert len(steps) <= 5 and steps[0] == 0
    assert len(set(np.diff(steps))) == 1  # evenly spaced after thinning
    first_step, first_vals = mon.report().samples["1"]["first"]
    assert first_step == 0 and first_vals.size == 8


def test_samples_are_refreshed_every_tenth_recorded_step():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    opt = optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt, every=2) as mon:
        for _ in range(25):
            opt.zero_grad()
            net(chainrule.randn(4, 2)).sum().backward()
            opt.step()
            mon.step()
    sm = mon.report().samples["0"]
    assert sm["first"][0] == 0 and sm["last"][0] == 20  # the 11th recorded step (every 2)


def test_report_includes_the_step_in_progress():
    net = nn.Sequential(nn.Linear(2, 2))
    mon = GradientMonitor(net)
    net(chainrule.randn(3, 2)).sum().backward()
    assert mon.report().steps.tolist() == [0]
    assert mon.report().steps.tolist() == [0]  # reporting does not end the step
    mon.remove()


def test_samples_come_from_the_outputs():
    net = nn.Sequential(nn.Linear(2, 50), nn.ReLU())
    x = chainrule.randn(10, 2)
    with GradientMonitor(net, sample_size=32) as mon:
        out = net(x)
        out.sum().backward()
    step, vals = mon.report().samples["1"]["last"]
    assert step == 0 and vals.shape == (32,)
    assert np.isin(vals, out._data.astype(np.float64)).all()


def test_bad_arguments():
    net = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        GradientMonitor(lambda x: x)
    with pytest.raises(TypeError, match="optimizer must have a step"):
        GradientMonitor(net, optimizer=object())
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        GradientMonitor(net, every=0)
    with pytest.raises(ValueError, match="max_history must be an int >= 2"):
        GradientMonitor(net, max_history=1)
    with pytest.raises(TypeError, match="thresholds must be a Thresholds"):
        GradientMonitor(net, thresholds={"dead_fraction": 0.1})
    assert not net._forward_hooks and not net.weight._hooks  # nothing left half-attached
    mon = GradientMonitor(net)
    with pytest.raises(TypeError, match="thresholds must be a Thresholds"):
        mon.report(thresholds=0.5)
    assert "attached" in repr(mon)
    mon.remove()
    assert "removed" in repr(mon)


def test_report_thresholds_override():
    net, x = _hand_net()
    with GradientMonitor(net) as mon:
        net(x).sum().backward()
    assert mon.report().findings == []  # half the units dead: not over 50%
    strict = mon.report(Thresholds(dead_fraction=0.4))
    assert [(f.kind, f.layer, f.value) for f in strict.findings] == [("dead", "1", 0.5)]
