"""`chainrule train --init-from FILE`: weights from torch.save or safetensors files."""

import os
import pickle
import zipfile

import numpy as np
import pytest

import chainrule
from chainrule import cli, io

torch = pytest.importorskip("torch", reason="PyTorch writes the checkpoints read here")

ARGS = ["--hidden", "16", "--epochs", "1", "--optimizer", "sgd", "--lr", "1e-30",
        "--momentum", "0", "--quiet"]


def _torch_mlp():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


def _trained_weights(out):
    return {k: v.numpy() for k, v in io.load(str(out / "checkpoint.safetensors"))["model"].items()}


@pytest.mark.parametrize("fmt", ["torch", "torch-legacy", "safetensors"])
def test_init_from_starts_from_the_files_weights(tmp_path, capsys, fmt):
    sd = _torch_mlp().state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt.startswith("torch"):
        torch.save(sd, path, _use_new_zipfile_serialization=fmt == "torch")
    else:
        chainrule.save({k: chainrule.tensor(v.numpy()) for k, v in sd.items()}, str(path))
    out = tmp_path / "run"
    assert cli.main(["train", "--init-from", str(path), "--out", str(out), *ARGS]) == 0
    got = _trained_weights(out)  # lr 1e-30: one epoch leaves the weights bit-identical
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v.numpy())


def test_init_from_bad_files_give_one_line_errors(tmp_path, capsys):
    out = str(tmp_path / "run")
    cases = []
    cases.append((tmp_path / "absent.pt", "not found"))
    wrong = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    torch.save(wrong.state_dict(), tmp_path / "wrong.pt")
    cases.append((tmp_path / "wrong.pt", "0.weight"))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"0.weight": Evil()}, protocol=2))
    cases.append((tmp_path / "evil.pt", "system"))
    (tmp_path / "junk.bin").write_bytes(b"\x00junk" * 20)
    cases.append((tmp_path / "junk.bin", "cannot initialise"))
    for path, words in cases:
        assert cli.main(["train", "--init-from", str(path), "--out", out, *ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert not marker.exists()
