"""Detection rules on hand-made statistics, and the table / JSON lines / PNG outputs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import chainrule
from chainrule import nn
from chainrule.diagnostics import (
    Finding,
    GradientMonitor,
    LayerInfo,
    ParamInfo,
    Report,
    Thresholds,
    detect,
)
from chainrule.diagnostics.report import LAYER_METRICS, PARAM_METRICS


def make_report(grad_norms, *, kinds=None, types=None, gains=None, dead=None, sat=None,
                act_nan=None, grad_nan=None, param_grad=None, update=None,
                thresholds=None) -> Report:
    """A Report over len(grad_norms) steps with one weight layer per column of grad_norms
    (plus activation layers given by ``kinds``, appended after them)."""
    g = np.asarray(grad_norms, dtype=np.float64)
    n_steps, n_w = g.shape
    kinds = kinds or []
    layers = [LayerInfo(f"fc{i}", (types or {}).get(i, "Linear"), None, True,
                        (gains or {}).get(i, 1.0)) for i in range(n_w)]
    layers += [LayerInfo(f"act{i}", {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}[k],
                         k, False) for i, k in enumerate(kinds)]
    nl = len(layers)
    ls = {m: np.full((n_steps, nl), np.nan) for m in LAYER_METRICS}
    ls["grad_norm"][:, :n_w] = g
    ls["grad_nan"][:, :n_w] = 0
    ls["grad_inf"][:, :n_w] = 0
    ls["act_nan"][:] = 0
    ls["act_inf"][:] = 0
    for i, k in enumerate(kinds):
        c = n_w + i
        if k == "relu" and dead is not None:
            ls["dead_fraction"][:, c] = dead
        if k != "relu" and sat is not None:
            ls["saturated_fraction"][:, c] = sat
    if act_nan is not None:
        ls["act_nan"][:, :n_w] = act_nan
    if grad_nan is not None:
        ls["grad_nan"][:, :n_w] = grad_nan
    params = [ParamInfo(f"fc{i}.weight", f"fc{i}", (4, 4), True) for i in range(n_w)]
    ps = {m: np.full((n_steps, n_w), np.nan) for m in PARAM_METRICS}
    ps["grad_norm"][:] = g if param_grad is None else param_grad
    ps["grad_nan"][:] = 0
    ps["grad_inf"][:] = 0
    if update is not None:
        ps["update_ratio"][:] = update
    return Report(layers, params, np.arange(n_steps), ls, ps, {},
                  thresholds or Thresholds())


def kinds_of(report):
    return [(f.kind, f.layer) for f in report.findings]


def test_healthy_profile_is_quiet():
    r = make_report([[0.5, 1.0, 2.0]] * 4, kinds=["relu"], dead=0.2, update=1e-3)
    assert r.findings == [] and r.ok


@pytest.mark.parametrize("first,expected", [(1e-4, [("vanishing", "fc0")]), (1e-2, []),
                                            (1e-3, [])])
def test_vanishing_across_layers(first, expected):
    r = make_report([[first, 0.1, 1.0]] * 3)
    assert kinds_of(r) == expected
    if expected:
        f = r.findings[0]
        assert f.value == pytest.approx(first)
        assert "'fc0'" in f.message and "'fc2'" in f.message and "1.0e-04" in f.message
        for remedy in ("He", "Xavier", "residual connections", "normalisation"):
            assert remedy in f.message


def test_vanishing_at_initialisation_only_is_still_reported():
    r = make_report([[1e-5, 1.0], [0.5, 1.0], [0.5, 1.0]])
    assert kinds_of(r) == [("vanishing", "fc0")]
    assert r.findings[0].value == pytest.approx(1e-5)
    assert "at step 0" in r.findings[0].message and r.findings[0].step == 0


@pytest.mark.parametrize("first,flag", [(1e4, True), (999.0, False)])
def test_exploding_across_layers(first, flag):
    r = make_report([[first, 1.0]] * 2)
    assert kinds_of(r) == ([("exploding", "fc0")] if flag else [])
    if flag:
        assert "gradient clipping" in r.findings[0].message


def test_exploding_over_steps():
    g = [[1.0, 1.0]] * 6 + [[3000.0, 2000.0]]
    r = make_report(g)
    assert kinds_of(r) == [("exploding", "fc0")]
    f = r.findings[0]
    # the total norm went from sqrt(2) (median of the first 5 steps) to sqrt(3000^2 + 2000^2)
    assert f.value == pytest.approx(np.hypot(3000, 2000) / np.sqrt(2))
    assert f.step == 6 and "by step 6" in f.message
    assert kinds_of(make_report([[1.0, 1.0]] * 6 + [[900.0, 900.0]])) == []


def test_vanishing_updates():
    r = make_report([[1.0, 1.0]] * 5, update=[[1e-7, 1e-3]] * 5)
    assert kinds_of(r) == [("vanishing", "fc0")]
    assert "fc0.weight" in r.findings[0].message
    assert r.findings[0].value == pytest.approx(1e-7)
    two = make_report([[1.0, 1.0]] * 5, update=[[1e-7, 1e-8]] * 5)
    assert kinds_of(two) == [("vanishing", "fc1")]  # one finding, naming the worst ...
    assert "Also over the threshold: 'fc0.weight'" in two.findings[0].message  # ... and the rest


def test_dead_units_use_the_last_steps():
    assert kinds_of(make_report([[1.0, 1.0]] * 3, kinds=["relu"],
                                dead=[0.9, 0.9, 0.4])) == []
    r = make_report([[1.0, 1.0]] * 4, kinds=["relu"], dead=[0.0, 0.6, 0.7, 0.8])
    assert kinds_of(r) == [("dead", "act0")]
    assert r.findings[0].value == pytest.approx(0.6)
    assert "60%" in r.findings[0].message and "LeakyReLU" in r.findings[0].message
    looser = make_report([[1.0, 1.0]] * 3, kinds=["relu"], dead=0.3,
                         thresholds=Thresholds(dead_fraction=0.25))
    assert kinds_of(looser) == [("dead", "act0")]


def test_saturation():
    r = make_report([[1.0, 1.0]] * 4, kinds=["tanh", "sigmoid"], sat=[0.2, 0.7, 0.8, 0.9])
    assert kinds_of(r) == [("saturated", "act0")]  # one finding for both layers
    assert "act1" in r.findings[0].message and "|tanh| > 0.99" in r.findings[0].message
    assert "ReLU-family" in r.findings[0].message
    assert kinds_of(make_report([[1.0, 1.0]], kinds=["tanh"], sat=0.5)) == []


def test_nonfinite_origin():
    fwd = make_report([[1.0, 1.0, 1.0]] * 3, act_nan=[[0, 0, 0], [0, 4, 7], [9, 9, 9]])
    assert kinds_of(fwd) == [("nonfinite", "fc1")]
    assert fwd.findings[0].value == 4 and fwd.findings[0].step == 1
    bwd = make_report([[1.0, 1.0, 1.0]] * 2, grad_nan=[[0, 0, 0], [3, 2, 0]])
    assert kinds_of(bwd) == [("nonfinite", "fc1")]  # the last layer that has them: the origin
    assert "backward" in bwd.findings[0].message


def test_remedies_fit_the_model():
    squash = make_report([[1e-6, 1.0]] * 2, kinds=["sigmoid"], gains={0: 0.08, 1: 0.08})
    msg = squash.findings[0].message
    assert "ReLU-family activation instead of sigmoid/tanh" in msg
    assert "std*sqrt(fan_in) = 0.08" in msg
    normed = make_report([[1e-6, 1.0]] * 2, kinds=["relu"], types={1: "LayerNorm"})
    msg = normed.findings[0].message
    assert "sigmoid/tanh" not in msg and "normalisation" not in msg


def test_thresholds_validation():
    for bad in ({"vanishing_ratio": 0.0}, {"dead_fraction": 1.0}, {"exploding_ratio": 0.5},
                {"window": 1.5}, {"update_ratio": float("inf")}, {"step_growth": True}):
        with pytest.raises(ValueError, match="Thresholds"):
            Thresholds(**bad)
    with pytest.raises(TypeError, match="thresholds must be a Thresholds"):
        detect(make_report([[1.0]]), {"dead_fraction": 0.1})


def test_finding_fields():
    f = make_report([[1e-5, 1.0]]).findings[0]
    assert isinstance(f, Finding)
    assert (f.kind, f.layer, f.step) == ("vanishing", "fc0", 0)
    assert f.value == pytest.approx(1e-5)


def _monitored_run():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(),
                        nn.Linear(8, 2))
    opt = chainrule.optim.SGD(net.parameters(), lr=0.1)
    with GradientMonitor(net, optimizer=opt) as mon:
        for _ in range(3):
            opt.zero_grad()
            net(chainrule.randn(16, 4)).sum().backward()
            opt.step()
            mon.step()
    return mon.report()


def test_to_table():
    r = _monitored_run()
    text = r.to_table()
    lines = text.splitlines()
    assert lines[0] == "gradient health: 3 recorded steps (steps 0..2), 5 layers, 6 parameters"
    assert "at step 2:" in text and "out-grad norm" in lines[2]
    rows = {ln.split()[0]: ln for ln in lines[4:9]}
    assert set(rows) == {"0", "1", "2", "3", "4"}
    assert rows["1"].split()[1] == "ReLU" and rows["0"].split()[1] == "Linear"
    g = r.layer_stats["grad_norm"][2, 0]
    assert f"{g:.3g}" in rows["0"]
    assert "findings: none" in text
    bad = make_report([[1e-6, 1.0]])
    assert "[vanishing] vanishing gradients" in bad.to_table()


def test_to_json_lines():
    r = _monitored_run()
    lines = r.to_json().splitlines()
    assert len(lines) == 3
    recs = [json.loads(ln) for ln in lines]
    assert [rec["step"] for rec in recs] == [0, 1, 2]
    rec = recs[1]
    assert rec["record"] == "step"
    assert rec["layers"]["1"]["type"] == "ReLU"
    assert rec["layers"]["1"]["grad_norm"] == pytest.approx(r.layer_stats["grad_norm"][1, 1])
    assert rec["layers"]["0"]["dead_fraction"] is None  # NaN (not measured) -> null
    assert rec["layers"]["0"]["act_nan"] == 0
    assert rec["params"]["0.weight"]["update_ratio"] == pytest.approx(
        r.param_stats["update_ratio"][1, 0])
    bad = make_report([[1e-6, 1.0]]).to_json().splitlines()
    finding = json.loads(bad[-1])
    assert finding["record"] == "finding" and finding["kind"] == "vanishing"
    assert finding["layer"] == "fc0" and finding["value"] == pytest.approx(1e-6)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    r = _monitored_run()
    path = tmp_path / "health.png"
    assert r.plot(str(path)) == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    empty = make_report(np.zeros((0, 2)))
    empty.plot(str(tmp_path / "empty.png"))
    assert (tmp_path / "empty.png").exists()
    with pytest.raises(ValueError, match="max_histograms"):
        r.plot(str(path), max_histograms=-1)


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    r = make_report([[1.0, 1.0]])
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"Report.plot needs matplotlib.*chainrule\[plot\]"):
        r.plot(str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_gradient_ratio_steps():
    r = make_report([[1.0, 4.0], [2.0, 4.0]])
    assert r.gradient_ratio() == 0.25 and r.gradient_ratio(step=1) == 0.5
    with pytest.raises(ValueError, match="step 7 was not recorded"):
        r.gradient_ratio(step=7)
    assert np.isnan(make_report([[1.0]]).gradient_ratio())
