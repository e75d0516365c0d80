"""The examples in chainrule.optim's docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["chainrule.optim", "chainrule.optim.optimizer", "chainrule.optim.sgd",
           "chainrule.optim.adam", "chainrule.optim.rmsprop", "chainrule.optim.adagrad",
           "chainrule.optim.lr_scheduler", "chainrule.optim.lbfgs"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
