"""The code blocks of docs/nn.md run (the residual-block example among them)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "nn.md"


@pytest.mark.skipif(not DOC.exists(), reason="docs/nn.md is not in this checkout")
def test_docs_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_nn"})
    printed = capsys.readouterr().out
    assert "(1): ResidualBlock(" in printed and "(fc2): Linear(in_features=256" in printed
