"""Every primitive, jitted, against eager: the value and the gradient (bitwise on the numpy
backend: the replay runs the same impls and rules on the same arrays, nothing is fused). On
the C backend, bitwise where the program's kernels compute only arithmetic, comparisons and
sqrt (the same IEEE operations in NumPy's order); where a kernel calls exp, log, tanh, sin or
cos (the C library's, not NumPy's own SIMD versions) within a relative 1e-5 (float32) or 1e-12
(float64). Each sample is traced on one draw and replayed on a fresh draw of the same shapes."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import cbackend
from chainrule.primitives import REGISTRY
from op_table import PRIM_SAMPLES, outputs


def _tensors(arrays):
    return [cr.tensor(a) if isinstance(a, np.ndarray) else a for a in arrays]


def _floats(out):
    return [o for o in outputs(out) if isinstance(o, cr.Tensor) and o.dtype.is_floating_point]


_TRANSCENDENTAL = ("exp", "log", "tanh", "sin", "cos")


def _inexact(*fns):
    """Whether any compiled kernel of these jitted functions calls a transcendental."""
    for f in fns:
        for c in f._compiles:
            k = c.kernels
            if k is not None and any(f"{n}f(" in k.source or f"{n}(" in k.source
                                     for n in _TRANSCENDENTAL):
                return True
    return False


def _assert_same(got, want, what, exact=True):
    got, want = outputs(got), outputs(want)
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want)):
        if b is None:
            assert a is None, f"{what} {i}"
            continue
        a = a.detach().numpy() if isinstance(a, cr.Tensor) else np.asarray(a)
        b = b.detach().numpy() if isinstance(b, cr.Tensor) else np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what} {i}: {a.shape} {b.shape}"
        if exact or not np.issubdtype(a.dtype, np.floating):
            np.testing.assert_array_equal(a, b, err_msg=f"{what} {i}")
        else:
            rtol = 1e-5 if a.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(initial=0),
                                       err_msg=f"{what} {i}")


@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("sample", PRIM_SAMPLES, ids=lambda s: s.id)
def test_primitive_jitted_value_and_gradient(sample, backend):
    first = sample.make(np.random.default_rng(0))
    second = sample.make(np.random.default_rng(1))
    diff = sample.diff_indices(first)
    differentiable = REGISTRY[sample.name].differentiable and diff

    def value(*ts):
        return sample.call(*ts)

    def gradient(*ts):
        ins = [t.detach().requires_grad_() if i in diff else t for i, t in enumerate(ts)]
        total = sum((o * o).sum() for o in _floats(sample.call(*ins)))
        return cr.autograd.grad(total, [ins[i] for i in diff], allow_unused=True)

    if backend == "c" and cbackend.unavailable():
        pytest.skip(f"backend 'c': {cbackend.unavailable()}")
    jv = cr.jit(value, fullgraph=True, backend=backend)
    jg = cr.jit(gradient, fullgraph=True, backend=backend)
    for arrays in (first, second, second):
        got_v, want_v = jv(*_tensors(arrays)), value(*_tensors(arrays))
        _assert_same(got_v, want_v, f"{sample.id} value", exact=not _inexact(jv))
        if differentiable:
            got_g = jg(*_tensors(arrays))
            _assert_same(got_g, gradient(*_tensors(arrays)), f"{sample.id} gradient",
                         exact=not _inexact(jg))
    assert sum(e.hits for e in jv._cache.values()) >= 1, "the value was never replayed"
    if differentiable:
        assert sum(e.hits for e in jg._cache.values()) >= 1, "the gradient was never replayed"


def test_every_primitive_has_a_sample():
    assert sorted(set(REGISTRY) - {s.name for s in PRIM_SAMPLES}) == []


def test_pass_tables_name_current_primitives():
    """jit/passes.py's name tables against the registry: every name is a primitive; a
    UFUNC_PRIMS entry is elementwise and its impl equals the ufunc bitwise on its samples
    (the backend calls the ufunc directly and memory planning gives it ``out=``)."""
    from chainrule.jit import passes

    prim_identities = {n for n in passes._IDENTITIES if not n.startswith("np.")}
    for name in set(passes.UFUNC_PRIMS) | passes._PASS_THROUGH | prim_identities:
        assert name in REGISTRY, name
    for name, ufunc in passes.UFUNC_PRIMS.items():
        assert REGISTRY[name].kind == "elementwise", name
        u = getattr(np, ufunc)
        samples = [s for s in PRIM_SAMPLES if s.name == name and not s.params]
        assert samples, name
        for s in samples:
            arrays = s.make(np.random.default_rng(0))
            want = REGISTRY[name].impl(np, *arrays)
            got = u(*arrays)
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want, err_msg=name)
