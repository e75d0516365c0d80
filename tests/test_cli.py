"""The main job, `chainrule train`: accuracy, checkpoints, bit-exact resume, one-line errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule
from chainrule import cli, io


def _run(argv):
    return cli.main(argv)


def _weights(path):
    ckpt = io.load(path)
    return {k: v.numpy() for k, v in ckpt["model"].items()}


def test_train_reaches_high_accuracy_and_saves_a_checkpoint(tmp_path, capsys):
    # a shortened run (the default is 30 epochs): the loss must fall and accuracy be high
    out = tmp_path / "run"
    assert _run(["train", "--epochs", "8", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    line = [ln for ln in text.splitlines() if ln.startswith("test accuracy:")]
    assert len(line) == 1
    acc = float(line[0].split(":")[1].strip().rstrip("%"))
    assert acc >= 95.0
    path = out / "checkpoint.safetensors"
    assert path.exists()
    # the weights are readable by the safetensors library itself, by name
    from safetensors.numpy import load_file

    raw = load_file(str(path))
    assert any(k.endswith("0.weight") for k in raw)


def test_resume_gives_bit_identical_weights(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["--hidden", "32", "--quiet", "--seed", "3"]
    assert _run(["train", "--epochs", "4", "--out", str(full), *common]) == 0
    assert _run(["train", "--epochs", "2", "--out", str(part), *common]) == 0
    ckpt = str(part / "checkpoint.safetensors")
    assert _run(["train", "--epochs", "4", "--out", str(part), "--resume", ckpt,
                 "--quiet"]) == 0
    a = _weights(full / "checkpoint.safetensors")
    b = _weights(part / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    capsys.readouterr()


@pytest.mark.parametrize("argv, words", [
    (["train", "--epochs", "0"], "positive integer"),
    (["train", "--lr", "-1"], "positive number"),
    (["train", "--optimizer", "newton"], "invalid choice"),
    (["train", "--hidden", "12,x"], "layer widths"),
    (["train", "--test-fraction", "1.5"], "test-fraction"),
    (["train", "--bogus"], "unrecognized arguments"),
])
def test_bad_flags_give_one_line_errors(argv, words, capsys, tmp_path):
    argv = [*argv, "--out", str(tmp_path)] if "--bogus" not in argv else argv
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert words in err
    assert "Traceback" not in err


def test_unreadable_checkpoints_give_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert _run(["train", "--resume", str(missing), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err and "nope" in err

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    assert _run(["train", "--resume", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read checkpoint" in err

    other = tmp_path / "other.safetensors"
    chainrule.save({"w": chainrule.ones(2)}, str(other))
    assert _run(["train", "--resume", str(other), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a chainrule train checkpoint" in err


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert _run(["train", "--epochs", "2", "--hidden", "16", "--out", str(tmp_path),
                 "--plot", "--quiet"]) == 0
    png = tmp_path / "curves.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()


def test_python_dash_m_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-m", "chainrule", "train", "--epochs", "1",
                        "--hidden", "8", "--quiet", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "test accuracy:" in r.stdout
