"""``chainrule.nn.modules.<file>.<Class>`` mirrors ``torch.nn.modules`` (issue 14): every class
chainrule has is found under the same file name as in PyTorch, and is chainrule.nn's class."""

import importlib

import pytest

import chainrule
from chainrule import nn


def test_named_paths_resolve_to_the_nn_classes():
    from chainrule.nn.modules.linear import Linear
    from chainrule.nn.modules.module import Module

    assert Linear is nn.Linear and Module is nn.Module
    assert chainrule.nn.modules.rnn.LSTM is nn.LSTM
    assert chainrule.nn.modules.dropout.Dropout2d is nn.Dropout2d
    assert chainrule.nn.modules.Linear is nn.Linear


def test_every_class_sits_in_the_same_file_as_in_torch():
    pytest.importorskip("torch")
    import pkgutil

    import torch.nn.modules as tm

    checked = 0
    for info in pkgutil.iter_modules(tm.__path__):
        tmod = importlib.import_module(f"torch.nn.modules.{info.name}")
        ours = [n for n in getattr(tmod, "__all__", []) if hasattr(nn, n)]
        if not ours:
            continue
        mod = importlib.import_module(f"chainrule.nn.modules.{info.name}")
        for name in ours:
            assert getattr(mod, name) is getattr(nn, name), f"{info.name}.{name}"
            checked += 1
    assert checked >= 60
