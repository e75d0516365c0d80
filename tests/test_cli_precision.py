"""`chainrule train --precision bf16`: training under chainrule.autocast with bfloat16."""

import subprocess
import sys

import pytest

from chainrule import cli, io

pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")


def test_bf16_training_learns_and_keeps_float32_weights(tmp_path, capsys):
    # a shortened run (the default 30 epochs reach 98.3%, see the report of issue 15)
    out = tmp_path / "run"
    assert cli.main(["train", "--precision", "bf16", "--epochs", "6", "--out", str(out),
                     "--quiet"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("test acc")]
    assert float(line[0].split(":")[1].strip().rstrip("%")) >= 95.0
    weights = io.load(str(out / "checkpoint.safetensors"))["model"]
    assert all(w.dtype.name == "float32" for w in weights.values())


def test_bf16_without_ml_dtypes_is_a_one_line_error(tmp_path):
    code = ("import sys; sys.modules['ml_dtypes'] = None\n"
            "from chainrule import cli\n"
            f"sys.exit(cli.main(['train', '--precision', 'bf16', '--out', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "chainrule[bf16]" in err and "Traceback" not in err
