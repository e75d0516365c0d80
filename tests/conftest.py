"""Shared test setup: every test starts from the same seed, grad mode on and float32 as the
default dtype, whatever the previous test did."""

from __future__ import annotations

import pytest

import chainrule


@pytest.fixture(autouse=True)
def _fresh_state():
    chainrule.manual_seed(0)
    chainrule.set_default_dtype(chainrule.float32)
    prev = chainrule.is_grad_enabled()
    chainrule.set_grad_enabled(True)
    yield
    chainrule.set_grad_enabled(prev)
    chainrule.set_default_dtype(chainrule.float32)
