"""``chainrule train --nproc 2``: re-launches itself under mpiexec and runs the pieces of the
one-process run on every rank: the same model (same batches, split over the ranks), the same
checkpoint format written by rank 0, --resume across --nproc 1 and 2 with the same flag rules,
the same checks before training and the same one-line errors, printed once."""

import json

import numpy as np
import pytest

import chainrule as cr

pytestmark = pytest.mark.mpi

ARGS = ["train", "--hidden", "32", "--quiet", "--optimizer", "sgd"]


def _ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("test accuracy") == 1, r.stdout  # rank 0 reports, once
    return r


def _one_line(r, rc, *words):
    err = r.stderr.strip()
    assert r.returncode == rc, (r.returncode, r.stdout + r.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err  # printed once
    for w in words:
        assert w in err, (w, err)


def _ckpt(tmp_path, out):
    ckpt = cr.io.load(str(tmp_path / out / "checkpoint.safetensors"))
    return ckpt, json.loads(ckpt["meta"])


def test_nproc_2_trains_the_one_process_model_and_resumes_across_nproc(cli, tmp_path):
    _ok(cli([*ARGS, "--epochs", "2", "--out", "one"]))
    # 2 ranks, then one process resumes; one process, then 2 ranks resume
    _ok(cli([*ARGS, "--epochs", "1", "--out", "two", "--nproc", "2"]))
    _ok(cli(["train", "--epochs", "2", "--quiet", "--out", "two",
             "--resume", "two/checkpoint.safetensors"]))
    _ok(cli([*ARGS, "--epochs", "1", "--out", "mix"]))
    _ok(cli(["train", "--epochs", "2", "--quiet", "--out", "mix", "--nproc", "2",
             "--resume", "mix/checkpoint.safetensors"]))
    a, meta_a = _ckpt(tmp_path, "one")
    for out in ("two", "mix"):
        b, meta_b = _ckpt(tmp_path, out)
        assert b["meta"] == json.dumps(meta_b, sort_keys=True)  # sorted, as one process
        assert meta_b["epoch"] == 2 and meta_b["args"] == meta_a["args"]
        np.testing.assert_allclose(meta_b["history"]["train_loss"],
                                   meta_a["history"]["train_loss"], rtol=1e-5)
        assert a["model"].keys() == b["model"].keys()
        for k in a["model"]:
            np.testing.assert_allclose(b["model"][k].numpy(), a["model"][k].numpy(),
                                       rtol=1e-4, atol=1e-5, err_msg=f"{out}: {k}")
    # diverging on 2 ranks: every rank stops at the same step, one line, the checkpoint stays
    before = (tmp_path / "mix" / "checkpoint.safetensors").read_bytes()
    r = cli(["train", "--epochs", "3", "--quiet", "--out", "mix", "--nproc", "2", "--lr",
             "1e10", "--resume", "mix/checkpoint.safetensors"])
    _one_line(r, 1, "diverged at epoch 3, step", "keeps epoch 2", "--lr 1e+10")
    assert (tmp_path / "mix" / "checkpoint.safetensors").read_bytes() == before
    # flags a resumed run cannot apply: the one-process rule and message
    r = cli(["train", "--epochs", "3", "--nproc", "2", "--out", "mix", "--hidden", "8",
             "--resume", "mix/checkpoint.safetensors"])
    _one_line(r, 2, "--hidden 8 cannot apply", "checkpoint has --hidden 32")
    # another run's checkpoint is never replaced without --overwrite
    r = cli([*ARGS, "--epochs", "1", "--out", "mix", "--nproc", "2"])
    _one_line(r, 1, "holds the checkpoint of an earlier run", "--overwrite")
    assert (tmp_path / "mix" / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("flags, rc, words", [
    (["--diagnose"], 2, ["--diagnose is not available with --nproc > 1"]),
    (["--resume", "nothing.safetensors"], 2, ["checkpoint not found: nothing.safetensors"]),
    (["--test-fraction", "0.0001"], 2, ["leaves no test examples"]),
    (["--out", "a_file"], 1, ["--out a_file is a file"]),
])
def test_nproc_2_errors_are_the_one_process_ones(cli, tmp_path, flags, rc, words):
    (tmp_path / "a_file").write_text("mine")
    r = cli(["train", "--epochs", "1", "--nproc", "2", *flags])
    _one_line(r, rc, *words)
    assert (tmp_path / "a_file").read_text() == "mine"


def test_jit_on_2_ranks_trains_the_eager_2_rank_model(cli, tmp_path):
    # --jit captures the DDP step, its bucket allreduces included
    _ok(cli([*ARGS, "--epochs", "1", "--nproc", "2", "--out", "eager"]))
    r = _ok(cli([*ARGS, "--epochs", "1", "--nproc", "2", "--out", "jit", "--jit"]))
    assert "graph break" not in r.stderr, r.stderr
    (a, meta_a), (b, meta_b) = _ckpt(tmp_path, "eager"), _ckpt(tmp_path, "jit")
    np.testing.assert_allclose(meta_b["history"]["train_loss"],
                               meta_a["history"]["train_loss"], rtol=1e-6)
    for k in a["model"]:
        np.testing.assert_allclose(b["model"][k].numpy(), a["model"][k].numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=k)


def test_diverging_fresh_run_on_2_ranks_saves_nothing(cli, tmp_path):
    r = cli([*ARGS, "--epochs", "2", "--lr", "1e10", "--nproc", "2", "--out", "x"])
    _one_line(r, 1, "diverged at epoch 1, step", "nothing was saved")
    assert not (tmp_path / "x" / "checkpoint.safetensors").exists()


def test_plot_on_2_ranks_draws_once(cli, tmp_path):
    pytest.importorskip("matplotlib")
    r = _ok(cli([*ARGS, "--epochs", "1", "--nproc", "2", "--out", "p", "--plot"]))
    assert r.stdout.count("curves:") == 1, r.stdout
    assert (tmp_path / "p" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_init_from_and_bf16_on_2_ranks(cli, tmp_path):
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")
    from chainrule.cli import build_model

    cr.manual_seed(5)
    sd = build_model(64, [32], 10, "relu").state_dict()
    cr.save(sd, str(tmp_path / "w.safetensors"))
    _ok(cli([*ARGS, "--epochs", "1", "--nproc", "2", "--out", "i", "--init-from",
             "w.safetensors", "--precision", "bf16", "--lr", "1e-30", "--momentum", "0"]))
    got, _ = _ckpt(tmp_path, "i")  # lr 1e-30: one epoch leaves the weights bit-identical
    for k, v in sd.items():
        np.testing.assert_array_equal(got["model"][k].numpy(), v.numpy(), err_msg=k)
