"""Shared test setup: every test starts from the same seed, grad mode on and float32 as the
default dtype, whatever the previous test did."""

from __future__ import annotations

import os

import pytest

import chainrule


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    """The jit's compiled kernels go to a directory of this test session (children too)."""
    old = os.environ.get("CHAINRULE_CACHE_DIR")
    os.environ["CHAINRULE_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernels"))
    yield
    if old is None:
        os.environ.pop("CHAINRULE_CACHE_DIR", None)
    else:
        os.environ["CHAINRULE_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _fresh_state():
    chainrule.manual_seed(0)
    chainrule.set_default_dtype(chainrule.float32)
    prev = chainrule.is_grad_enabled()
    chainrule.set_grad_enabled(True)
    yield
    chainrule.set_grad_enabled(prev)
    chainrule.set_default_dtype(chainrule.float32)
