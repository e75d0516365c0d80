"""``chainrule train --nproc 2``: re-launches itself under mpiexec, trains the model that the
one-process run trains (same batches, split over the ranks), writes the same checkpoint format
from rank 0, and resumes."""

import numpy as np
import pytest

import chainrule as cr

pytestmark = pytest.mark.mpi

ARGS = ["train", "--epochs", "1", "--hidden", "32", "--quiet", "--optimizer", "sgd"]


def test_nproc_2_trains_the_one_process_model_and_resumes(cli, tmp_path):
    one = cli([*ARGS, "--out", "one"])
    two = cli([*ARGS, "--out", "two", "--nproc", "2"])
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("test accuracy") == 1, two.stdout  # rank 0 reports, once
    a = cr.io.load(str(tmp_path / "one" / "checkpoint.safetensors"))
    b = cr.io.load(str(tmp_path / "two" / "checkpoint.safetensors"))
    assert a["meta"].count('"epoch": 1') == b["meta"].count('"epoch": 1') == 1
    for k in a["model"]:
        np.testing.assert_allclose(b["model"][k].numpy(), a["model"][k].numpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=k)
    more = cli(["train", "--epochs", "2", "--quiet", "--nproc", "2", "--out", "two",
                 "--resume", "two/checkpoint.safetensors"])
    assert more.returncode == 0, more.stdout + more.stderr
    c = cr.io.load(str(tmp_path / "two" / "checkpoint.safetensors"))
    assert '"epoch": 2' in c["meta"]
    bad = cli(["train", "--nproc", "2", "--resume", "nothing.safetensors"])
    assert bad.returncode != 0
    assert "cannot resume from nothing.safetensors" in bad.stderr
    assert "Traceback" not in bad.stderr
