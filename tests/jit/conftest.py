"""The jit tests that compare with eager bitwise run on the numpy backend (it fuses nothing);
``backend="auto"`` would pick the C backend, whose fused transcendental functions (exp, log,
tanh: the C library's, not NumPy's SIMD versions) may differ from NumPy's by an ulp.
test_cbackend.py and test_jit_primitives.py name ``backend="c"`` explicitly for its tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _numpy_backend_for_auto(monkeypatch):
    monkeypatch.setenv("CHAINRULE_JIT_BACKEND", "numpy")
