"""The examples in the docstrings of chainrule.diagnostics (and of anomaly mode and viz) run."""

from __future__ import annotations

import doctest
import importlib
import warnings

import pytest

MODULES = ["chainrule.diagnostics", "chainrule.diagnostics.stats",
           "chainrule.diagnostics.monitor", "chainrule.diagnostics.report",
           "chainrule.diagnostics.models", "chainrule.diagnostics.cli",
           "chainrule.autograd.anomaly", "chainrule.viz"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    if name == "chainrule.diagnostics.report":
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)  # nothing the examples write lands in the checkout
    mod = importlib.import_module(name)
    with warnings.catch_warnings():  # anomaly mode's example takes log(-1) on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
