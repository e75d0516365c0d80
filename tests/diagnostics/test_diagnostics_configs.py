"""The seed's table, shortened: the monitor flags the vanishing and exploding configurations
of a 20-layer MLP on the digits and stays quiet on the healthy ones (3 steps, fixed seeds);
and the command-line entry points (``chainrule diagnose``, ``chainrule train --diagnose``)."""

from __future__ import annotations

import json

import pytest

from chainrule.cli import main
from chainrule.diagnostics import build_mlp, run_digits

# (activation, init, norm, residual, clip) -> the finding kinds expected
SICK = [
    (("sigmoid", "normal-small", "none", False, None), {"vanishing"}),
    (("relu", "normal-small", "none", False, None), {"vanishing"}),
    (("relu", "unit", "none", False, None), {"exploding"}),
    # clipping bounds the step but not the layer-to-layer gain: still exploding
    (("relu", "unit", "none", False, 1.0), {"exploding"}),
]
HEALTHY = [
    ("tanh", "xavier", "none", False, None),
    ("relu", "he", "none", False, None),
    ("relu", "he", "none", False, 1.0),
    ("relu", "unit", "layer", False, None),
    ("relu", "unit", "batch", False, None),
    ("relu", "normal-small", "none", True, None),
]


def _run(cfg, seed):
    act, init, norm, residual, clip = cfg
    return run_digits(depth=20, width=32, activation=act, init=init, norm=norm,
                      residual=residual, clip=clip, steps=3, seed=seed, evaluate=False)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cfg,kinds", SICK, ids=lambda v: "-".join(map(str, v))
                         if isinstance(v, tuple) else None)
def test_sick_configurations_are_flagged(cfg, kinds, seed):
    res = _run(cfg, seed)
    found = {f.kind for f in res.report.findings}
    assert kinds <= found, res.report.to_table()
    assert not ({"vanishing", "exploding"} - kinds) & found
    depth_finding = next(f for f in res.report.findings if f.kind in kinds)
    assert depth_finding.layer == "stem.linear"  # the first layer, where the gradient is off
    if "vanishing" in kinds:
        assert res.gradient_ratio < 1e-3
    else:
        assert res.gradient_ratio > 1e3


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cfg", HEALTHY, ids=lambda v: "-".join(map(str, v)))
def test_healthy_configurations_are_quiet(cfg, seed):
    res = _run(cfg, seed)
    assert res.report.findings == [], res.report.to_table()
    assert 1e-2 < res.gradient_ratio < 1e3


def test_run_digits_trains_and_evaluates():
    res = run_digits(depth=3, width=32, activation="relu", init="he", steps=30, lr=1e-2, seed=0)
    assert res.steps == 30 and res.report.steps.tolist() == list(range(30))
    assert res.test_accuracy > 0.6  # 30 Adam steps of a small MLP beat chance (10%) easily
    assert res.final_loss < 2.0


def test_build_mlp_structure_and_errors():
    net = build_mlp(depth=5, width=8, activation="sigmoid", init="unit", norm="batch",
                    residual=True)
    assert len(net.blocks) == 3 and net.blocks[0].residual and not net.stem.residual
    assert net.blocks[0].linear.bias is None and type(net.blocks[0].norm).__name__ == \
        "BatchNorm1d"
    assert float(net.head.bias.abs().max()) == 0.0
    with pytest.raises(ValueError, match="depth must be an int >= 2"):
        build_mlp(depth=1)
    with pytest.raises(ValueError, match="init must be one of"):
        build_mlp(init="orthogonal")
    with pytest.raises(ValueError, match="activation must be one of"):
        build_mlp(activation="swish")
    with pytest.raises(ValueError, match="norm must be one of"):
        build_mlp(norm="group")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        run_digits(steps=0)
    with pytest.raises(ValueError, match="clip must be a positive number"):
        run_digits(clip=-1.0)


def test_cli_diagnose_prints_the_report(capsys):
    rc = main(["diagnose", "--depth", "20", "--width", "32", "--steps", "2",
               "--activation", "sigmoid", "--init", "normal-small"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("diagnose: 20 Linear layers of width 32, sigmoid, init normal-small")
    assert "gradient health: 2 recorded steps" in out
    assert "[vanishing] vanishing gradients" in out and "'stem.linear'" in out
    assert "test accuracy after 2 steps" in out


def test_cli_diagnose_json_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "h.png"
    rc = main(["diagnose", "--depth", "4", "--width", "8", "--steps", "2", "--init", "unit",
               "--norm", "layer", "--residual", "--clip", "1", "--json", "--plot", str(png)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    recs = [json.loads(ln) for ln in lines]  # stdout holds only JSON
    assert [r["step"] for r in recs if r["record"] == "step"] == [0, 1]
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv,msg", [
    (["--depth", "1"], "--depth: expected an integer >= 2"),
    (["--init", "zeros"], "--init: invalid choice"),
    (["--clip", "-1"], "--clip: expected a positive number"),
    (["--steps", "x"], "--steps: expected an integer"),
    (["--residual", "--depth", "2"], "--residual needs --depth 3 or more"),
])
def test_cli_diagnose_user_errors(capsys, argv, msg):
    rc = main(["diagnose", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_diagnose_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    rc = main(["diagnose", "--depth", "3", "--width", "4", "--steps", "1", "--plot",
               str(tmp_path / "x.png")])
    assert rc == 2 and "needs matplotlib" in capsys.readouterr().err


def test_cli_train_diagnose(capsys, tmp_path):
    rc = main(["train", "--epochs", "1", "--hidden", "32", "--diagnose", "--quiet",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "gradient health:" in out and "findings: none" in out
    assert "test accuracy:" in out
