"""Imports point down the layers: autograd/ and primitives/ sit below ops/, nn/ and
tensor.py, so no module in them imports those, neither at module level nor inside a
function (a lazy import is still an upward dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import chainrule

PKG = Path(chainrule.__file__).parent
LOWER = ("autograd", "primitives")
UPPER = ("chainrule.ops", "chainrule.nn", "chainrule.tensor")

def _resolve(path: Path, node: ast.ImportFrom) -> list[str]:
    """The absolute module names an ImportFrom in ``path`` brings in."""
    if node.level:
        parts = ["chainrule", *path.relative_to(PKG).with_suffix("").parts]
        base = ".".join(parts[:len(parts) - node.level])
        mod = f"{base}.{node.module}" if node.module else base
    else:
        mod = node.module or ""
    # `from .. import ops` imports the module chainrule.ops
    return [mod] + [f"{mod}.{a.name}" for a in node.names]


def _upward(name: str) -> bool:
    return any(name == u or name.startswith(u + ".") for u in UPPER)


def upward_imports(path: Path) -> list[str]:
    """``line: module`` for each import statement in ``path`` (at any depth: module level or
    inside a function) that brings in a module of an upper layer."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = _resolve(path, node)
        else:
            continue
        up = [m for m in names if _upward(m)]
        if up:
            out.append(f"{node.lineno}: {up[0]}")
    return out


FILES = sorted(p for d in LOWER for p in (PKG / d).glob("*.py"))


def test_the_scan_finds_upward_imports(monkeypatch):
    assert len(FILES) > 10
    probe = PKG / "autograd" / "engine.py"  # relative imports resolve from its place
    src = ("from .. import ops\n"
           "from ..primitives import core\n"
           "def f():\n"
           "    from ..tensor import tensor\n"
           "    import chainrule.nn.module\n"
           "    from . import graph\n")
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src)
    assert upward_imports(probe) == ["1: chainrule.ops", "4: chainrule.tensor",
                                     "5: chainrule.nn.module"]
    assert not _upward("chainrule.nnx") and not _upward("chainrule.tensorlike")


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_upward_import(path):
    bad = upward_imports(path)
    assert not bad, (f"{path.parent.name}/{path.name} imports upward (autograd/ and "
                     "primitives/ sit below ops/, nn/, tensor.py), at lines\n" + "\n".join(bad))
