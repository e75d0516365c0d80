"""`chainrule train` under faults and bad input (issue 17): a diverging run stops and keeps the
good checkpoint; file-system problems, bad flags and unfit checkpoints are one line, never a
traceback; --resume never ignores a flag; a run never replaces another run's checkpoint."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import chainrule
from chainrule import cli, io

SMALL = ["--hidden", "16", "--quiet"]


def _one_line(capsys, *words, rc=None):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.fixture
def good(tmp_path, capsys):
    """A folder with the checkpoint of one good epoch; returns (folder, checkpoint, bytes)."""
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--out", str(out), "--optimizer", "sgd",
                     *SMALL]) == 0
    capsys.readouterr()
    path = out / "checkpoint.safetensors"
    return out, path, path.read_bytes()


# ------------------------------------------------------------------ a diverging run
def test_diverging_run_stops_with_one_line_and_keeps_the_good_checkpoint(good, capsys):
    out, path, before = good
    rc = cli.main(["train", "--resume", str(path), "--out", str(out), "--epochs", "3",
                   "--lr", "1e10", "--quiet"])
    err = _one_line(capsys, "diverged at epoch 2, step", "--diagnose", "lower --lr",
                    "keeps epoch 1")
    assert rc == 1
    assert re.search(r"step \d+ of 45", err)
    assert path.read_bytes() == before  # never overwritten by non-finite weights
    w = io.load(str(path))["model"]
    assert all(np.isfinite(v.numpy()).all() for v in w.values())


def test_diverging_fresh_run_saves_nothing(tmp_path, capsys):
    out = tmp_path / "x"
    rc = cli.main(["train", "--optimizer", "sgd", "--lr", "1e10", "--epochs", "3",
                   "--out", str(out), *SMALL])
    _one_line(capsys, "diverged at epoch 1", "nothing was saved")
    assert rc == 1 and not (out / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("flags, words", [
    (["--lr", "inf"], "--lr: expected a positive number"),
    (["--lr", "nan"], "--lr: expected a positive number"),
    (["--momentum", "nan"], "--momentum: expected a number >= 0"),
    (["--weight-decay", "-1"], "--weight-decay: expected a number >= 0"),
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--test-fraction", "0.0001"], "leaves no test examples"),
    (["--test-fraction", "0.9999"], "leaves no training examples"),
    (["--momentum", "0.5", "--optimizer", "adam"], "--momentum applies to sgd and rmsprop"),
])
def test_bad_settings_fail_before_anything_runs(flags, words, tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["train", *flags, "--out", str(out)]) == 2
    _one_line(capsys, words)
    assert not out.exists()  # nothing ran, nothing was created


# ------------------------------------------------------------------ file-system problems
def test_out_is_an_existing_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("mine")
    assert cli.main(["train", "--out", str(f), *SMALL]) == 1
    _one_line(capsys, str(f), "is a file")
    assert f.read_text() == "mine"


def test_out_lies_under_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("mine")
    assert cli.main(["train", "--out", str(f / "sub"), *SMALL]) == 1
    _one_line(capsys, str(f / "sub"), "Not a directory")


def test_out_not_writable_chmod(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod 000; the mocked test below covers it")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert cli.main(["train", "--out", str(ro), *SMALL]) == 1
        _one_line(capsys, str(ro), "Permission denied")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("errno_, words", [(13, "Permission denied"),
                                           (30, "Read-only file system")])
def test_out_not_writable_found_before_training(tmp_path, capsys, monkeypatch, errno_, words):
    # the probe write meets what a chmod 000 folder (as non-root) or a read-only mount gives;
    # simulated, since the tests run as root and cannot mount
    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = os.open

    def deny(path, *a, **k):
        if os.fspath(path).startswith(str(ro)):
            raise OSError(errno_, os.strerror(errno_), path)
        return real_open(path, *a, **k)

    trained = []
    monkeypatch.setattr(os, "open", deny)
    monkeypatch.setattr(cli, "build_model", lambda *a: trained.append(1))
    assert cli.main(["train", "--out", str(ro), *SMALL]) == 1
    _one_line(capsys, str(ro), words)
    assert trained == []  # found before the model was even built


def test_out_on_a_read_only_mount_is_found_before_training(tmp_path):
    # a real read-only bind mount, in a private mount namespace (unshare), where available
    import shutil

    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces) for a read-only mount")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = (f"mount --bind -o ro {src} {mnt} && exec {sys.executable} -m chainrule train "
              f"--out {mnt} --hidden 8 --quiet")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                       env=env, timeout=300)
    if "mount:" in r.stderr:
        pytest.skip(f"bind mounts are not allowed here: {r.stderr.strip()}")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(mnt) in r.stderr and "Read-only file system" in r.stderr
    assert "test accuracy" not in r.stdout


def _run_limited(argv, fsize):
    code = ("import resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize})); "
            "from chainrule.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=env, timeout=300)


def test_file_too_large_while_saving_keeps_the_previous_checkpoint(good):
    pytest.importorskip("resource")
    out, path, before = good
    r = _run_limited(["train", "--resume", str(path), "--out", str(out), "--epochs", "2",
                      "--quiet"], fsize=4096)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(path) in r.stderr and "File too large" in r.stderr
    assert "previous checkpoint is intact" in r.stderr
    assert path.read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["checkpoint.safetensors"]  # no temp file left


def test_plot_target_that_is_a_folder_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    (out / "curves.png").mkdir(parents=True)
    assert cli.main(["train", "--out", str(out), "--plot", *SMALL]) == 1
    _one_line(capsys, str(out / "curves.png"), "is a folder")
    assert not (out / "checkpoint.safetensors").exists()


def test_plot_write_failure_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def full(self, path, **kw):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(Figure, "savefig", full)
    out = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--out", str(out), "--plot", *SMALL]) == 1
    _one_line(capsys, "curves.png", "No space left on device", "checkpoint is saved")
    assert (out / "checkpoint.safetensors").exists()


def _rewrite(path, dest, edit):
    ckpt = io.load(str(path))
    edit(ckpt)
    io.save(ckpt, str(dest))


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.__setitem__("meta", "{not json"), "is not valid JSON"),
    (lambda c: c.__setitem__("meta", json.dumps({"history": {}, "args": {}})), "'epoch'"),
    (lambda c: c.__setitem__("meta", json.dumps(
        {**json.loads(c["meta"]), "args": {"hidden": [16]}})), "'activation'"),
])
def test_checkpoint_with_bad_metadata(good, tmp_path, capsys, edit, words):
    _out, path, _ = good
    bad = tmp_path / "bad.safetensors"
    _rewrite(path, bad, edit)
    assert cli.main(["train", "--resume", str(bad), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, str(bad), words)


# ------------------------------------------------------------------ --resume and flags
@pytest.mark.parametrize("flags, words", [
    (["--hidden", "32"], ["--hidden 32", "checkpoint has --hidden 16"]),
    (["--activation", "tanh"], ["--activation tanh", "checkpoint has --activation relu"]),
    (["--optimizer", "adam"], ["--optimizer adam", "checkpoint has --optimizer sgd"]),
    (["--seed", "5"], ["--seed 5", "checkpoint has --seed 0"]),
])
def test_resume_refuses_flags_that_cannot_apply(good, capsys, flags, words):
    out, path, before = good
    assert cli.main(["train", "--resume", str(path), "--out", str(out), "--epochs", "2",
                     *flags]) == 2
    _one_line(capsys, *words)
    assert path.read_bytes() == before


def test_resume_applies_lr_momentum_and_says_so(good, capsys):
    out, path, _ = good
    assert cli.main(["train", "--resume", str(path), "--out", str(out), "--epochs", "2",
                     "--lr", "0.01", "--momentum", "0.5", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "--lr 0.01 (checkpoint: 0.05)" in text and "--momentum 0.5 (checkpoint: 0.9)" in text
    ckpt = io.load(str(path))
    g = ckpt["optimizer"]["param_groups"][0]
    assert g["lr"] == 0.01 and g["momentum"] == 0.5
    meta = json.loads(ckpt["meta"])
    assert meta["epoch"] == 2 and meta["args"]["lr"] == 0.01


def test_state_dict_that_does_not_fit_names_keys_and_shapes(good, tmp_path, capsys):
    _out, path, _ = good
    bad = tmp_path / "bad.safetensors"
    _rewrite(path, bad, lambda c: c["model"].__setitem__("0.weight", chainrule.zeros(3, 5)))
    assert cli.main(["train", "--resume", str(bad), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, "0.weight", "(3, 5)", "(16, 64)")


# ------------------------------------------------------------------ artifacts
def test_a_second_run_never_replaces_the_first_ones_checkpoint(good, capsys):
    out, path, before = good
    assert cli.main(["train", "--epochs", "1", "--out", str(out), *SMALL]) == 1
    _one_line(capsys, str(path), "--overwrite")
    assert path.read_bytes() == before
    assert cli.main(["train", "--epochs", "1", "--out", str(out), "--seed", "1",
                     "--overwrite", *SMALL]) == 0
    assert path.read_bytes() != before


def test_same_seed_gives_byte_identical_checkpoint_files(tmp_path):
    # separate processes: the safetensors library orders its header maps differently in each
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    files = []
    for name in ("a", "b", "c"):
        r = subprocess.run([sys.executable, "-m", "chainrule", "train", "--epochs", "1",
                            "--out", str(tmp_path / name), *SMALL], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        files.append((tmp_path / name / "checkpoint.safetensors").read_bytes())
    assert files[0] == files[1] == files[2]


# ------------------------------------------------------------------ the first minutes
class _Terminal:
    """A stderr that says it is a terminal, so that tqdm draws."""

    def __init__(self):
        self.parts = []

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_bar_counts_batches_and_leaves_an_epoch_line(tmp_path, monkeypatch, capsys):
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert cli.main(["train", "--epochs", "2", "--hidden", "8", "--out", str(tmp_path)]) == 0
    text = "".join(term.parts)
    assert "1438/1438" in text and "736/1438" in text  # per-batch counts, not 0/45 throughout
    lines = [ln for ln in re.split(r"[\r\n]", text) if ln.startswith("epoch ")
             and "train loss" in ln]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("(default: 32)", "(default: 0.2)", "(default: 256,128)", "(default: relu)",
                  "(default: 0.9 for sgd", "(default: 30)", "(default: runs/digits)"):
        assert words in text, words
    with pytest.raises(SystemExit):
        cli.main(["diagnose", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 64)" in text and "(default: 0)" in text


def test_diagnose_json_prints_only_json(capsys):
    assert cli.main(["diagnose", "--depth", "3", "--width", "4", "--steps", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    for ln in out.splitlines():
        json.loads(ln)


def test_one_cli_error_and_no_import_circle():
    from chainrule import errors

    assert cli.CLIError is errors.CLIError
    code = ("import sys, chainrule.diagnostics.cli; "
            "sys.exit(1 if 'chainrule.cli' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0
