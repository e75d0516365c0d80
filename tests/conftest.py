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


@pytest.fixture(autouse=True)
def _jit_auto_is_numpy_in_tests_jit(request, monkeypatch):
    """The jit tests (tests/jit) compare with eager bitwise, so there ``backend="auto"`` means
    the numpy backend (it fuses nothing); backend "c"'s fused exp, log and tanh (the C
    library's) may differ from NumPy's by an ulp. test_cbackend.py and test_jit_primitives.py
    name ``backend="c"`` for its tests. (A fixture here, not a tests/jit/conftest.py: two
    conftest modules in sibling folders clash under --doctest-modules.)"""
    if request.path.parent.name == "jit":
        monkeypatch.setenv("CHAINRULE_JIT_BACKEND", "numpy")
