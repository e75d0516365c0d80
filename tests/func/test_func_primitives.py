"""Every primitive in the table, through the transforms: forward mode against central
differences and against reverse mode (<u, J^T v> == <J u, v>), vmap against a Python loop
(each input batched alone, all batched, batch dims not first, nested vmap), and the batched
jvp/vjp rules (vmap of jvp, jacrev against jacfwd)."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule
from chainrule.autograd import grad as agrad
from chainrule.func import jacfwd, jacrev, jvp, vmap
from chainrule.func.batching import missing_rules
from chainrule.primitives import REGISTRY
from op_table import PRIM_SAMPLES as SAMPLES
from op_table import prim_samples as by_name

DIFF = [s for s in SAMPLES if REGISTRY[s.name].differentiable
        and s.diff_indices(s.make(np.random.default_rng(0)))]


def _tensors(arrays):
    return [chainrule.tensor(a) if isinstance(a, np.ndarray) else a for a in arrays]


def _np(t):
    return t.detach().numpy() if isinstance(t, chainrule.Tensor) else np.asarray(t)


def _sub(sample, arrays):
    """f(*differentiable inputs) with the other inputs fixed, and those inputs."""
    ts = _tensors(arrays)
    idx = sample.diff_indices(arrays)

    def f(*xs):
        full = list(ts)
        for i, x in zip(idx, xs):
            full[i] = x
        return sample.call(*full)

    return f, [ts[i] for i in idx]


def test_every_primitive_has_samples_and_a_batching_rule():
    assert missing_rules() == []
    assert sorted(n for n in REGISTRY if not by_name(n)) == []
    for n, p in REGISTRY.items():
        if p.differentiable:
            assert any(s.diff_indices(s.make(np.random.default_rng(0))) for s in by_name(n)), n


@pytest.mark.parametrize("sample", DIFF, ids=lambda s: s.id)
def test_jvp_against_finite_differences_and_vjp(sample):
    rng = np.random.default_rng(1)
    arrays = sample.make(rng)
    f, xs = _sub(sample, arrays)
    us = [chainrule.tensor(rng.standard_normal(x.shape)) for x in xs]
    out, ju = jvp(f, tuple(xs), tuple(us))
    ref = sample.call(*_tensors(arrays))
    np.testing.assert_allclose(_np(out), _np(ref), rtol=1e-12, atol=1e-12)
    assert ju.shape == out.shape and ju.dtype == out.dtype
    eps = sample.eps
    plus = _np(f(*[chainrule.tensor(_np(x) + eps * _np(u)) for x, u in zip(xs, us)]))
    minus = _np(f(*[chainrule.tensor(_np(x) - eps * _np(u)) for x, u in zip(xs, us)]))
    fd = (plus.astype(np.float64) - minus) / (2 * eps)
    np.testing.assert_allclose(_np(ju), fd, rtol=sample.rtol, atol=sample.rtol * 10)
    # <v, J u> == <J^T v, u>
    leaves = [x.detach().requires_grad_() for x in xs]
    y = f(*leaves)
    v = chainrule.tensor(rng.standard_normal(y.shape)).to(y.dtype)
    gs = agrad(y, leaves, grad_outputs=v, allow_unused=True)
    lhs = float(np.sum(_np(v).astype(np.float64) * _np(ju)))
    rhs = sum(float(np.sum(_np(g) * _np(u))) for g, u in zip(gs, us) if g is not None)
    assert lhs == pytest.approx(rhs, rel=max(1e-9, sample.rtol / 10), abs=1e-9)


ND = [s for s in SAMPLES if not REGISTRY[s.name].differentiable]


@pytest.mark.parametrize("sample", ND, ids=lambda s: s.id)
def test_non_differentiable_primitives_carry_no_tangent(sample):
    rng = np.random.default_rng(2)
    arrays = sample.make(rng)
    ts = _tensors(arrays)
    fl = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    if not fl:
        out = sample.call(*ts)
        assert not out.requires_grad
        return

    def f(*xs):
        full = list(ts)
        for i, x in zip(fl, xs):
            full[i] = x
        return sample.call(*full)

    tans = tuple(chainrule.tensor(rng.standard_normal(ts[i].shape)) for i in fl)
    out, t = jvp(f, tuple(ts[i] for i in fl), tans)
    assert not np.any(_np(t))
    np.testing.assert_array_equal(_np(out), _np(sample.call(*ts)))


# ---------------------------------------------------------------- vmap against a loop
B = 3


def _batch(sample, seed, batched, axis_last=False):
    """Inputs for vmap: each batched input stacked from B draws, others from draw 0."""
    draws = [sample.make(np.random.default_rng(seed + b)) for b in range(B)]
    base = draws[0]
    inputs, axes = [], []
    for i, a in enumerate(base):
        if isinstance(a, np.ndarray) and i in batched:
            ax = a.ndim if axis_last else 0
            inputs.append(chainrule.tensor(np.stack([d[i] for d in draws], axis=ax)))
            axes.append(ax)
        else:
            inputs.append(chainrule.tensor(a) if isinstance(a, np.ndarray) else a)
            axes.append(None)
    per_example = [[d[i] if i in batched else base[i] for i in range(len(base))]
                   for d in draws]
    return inputs, tuple(axes), per_example


def _loop(sample, per_example):
    return np.stack([_np(sample.call(*_tensors(ex))) for ex in per_example])


def _patterns(sample):
    arrays = sample.make(np.random.default_rng(0))
    tens = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray)]
    pats = [("all", set(tens), False)]
    if len(tens) > 1:
        pats += [(f"only{i}", {i}, False) for i in tens]
    pats.append(("last", set(tens), True))
    return pats


CASES = [(s, name, batched, last) for s in SAMPLES if s.vmap
         for name, batched, last in _patterns(s)]


def _check(got, want, dtype_kind):
    if dtype_kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("sample,name,batched,last", CASES,
                         ids=[f"{c[0].id}-{c[1]}" for c in CASES])
def test_vmap_against_loop(sample, name, batched, last):
    inputs, axes, per_example = _batch(sample, 10, batched, last)
    out = vmap(sample.call, in_axes=axes)(*inputs)
    want = _loop(sample, per_example)
    assert out.shape == want.shape
    _check(_np(out), want, want.dtype.kind)


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.vmap], ids=lambda s: s.id)
def test_nested_vmap_against_loop(sample):
    arrays = sample.make(np.random.default_rng(0))
    tens = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray)]
    outer_b, inner_b = 2, 3
    draws = [[sample.make(np.random.default_rng(100 + 10 * o + i)) for i in range(inner_b)]
             for o in range(outer_b)]
    # the first tensor input is mapped by both levels, the others only by the inner one
    first = tens[0]
    inputs, outer_axes, inner_axes = [], [], []
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            inputs.append(a)
            outer_axes.append(None)
            inner_axes.append(None)
        elif i == first:
            inputs.append(chainrule.tensor(np.stack([np.stack([d[i] for d in row], axis=0)
                                                     for row in draws], axis=1)))
            outer_axes.append(1)  # (inner, outer, ...): outer maps axis 1
            inner_axes.append(0)
        else:
            inputs.append(chainrule.tensor(np.stack([d[i] for d in draws[0]])))
            outer_axes.append(None)
            inner_axes.append(0)
    f = vmap(vmap(sample.call, in_axes=tuple(inner_axes)), in_axes=tuple(outer_axes))
    out = f(*inputs)
    want = np.stack([np.stack([_np(sample.call(*_tensors(
        [draws[o][k][i] if i == first else (draws[0][k][i] if i in tens else arrays[i])
         for i in range(len(arrays))]))) for k in range(inner_b)]) for o in range(outer_b)])
    assert out.shape == want.shape
    _check(_np(out), want, want.dtype.kind)


@pytest.mark.parametrize("sample", DIFF, ids=lambda s: s.id)
def test_batched_jvp_and_vjp_rules(sample):
    """jacfwd (vmap of jvp) and jacrev (vmap of vjp) agree with each other and with loops
    of single jvps: this runs every jvp and vjp rule under a batching level."""
    arrays = sample.make(np.random.default_rng(3))
    f, xs = _sub(sample, arrays)
    argnums = tuple(range(len(xs)))
    jf = jacfwd(f, argnums=argnums)(*xs)
    jr = jacrev(f, argnums=argnums)(*xs)
    out = f(*xs)
    for k, x in enumerate(xs):
        a, b = _np(jf[k]), _np(jr[k])
        assert a.shape == tuple(out.shape) + tuple(x.shape)
        np.testing.assert_allclose(a, b, rtol=1e-6 if out.dtype == chainrule.float32 else 1e-10,
                                   atol=1e-6 if out.dtype == chainrule.float32 else 1e-10)
        # one column by a plain jvp
        n = x.numel()
        if n:
            e = np.zeros(n)
            e[n // 2] = 1.0
            tans = tuple(chainrule.tensor(e.reshape(x.shape)) if j == k else
                         chainrule.zeros(*xx.shape, dtype=chainrule.float64)
                         for j, xx in enumerate(xs))
            _, col = jvp(f, tuple(xs), tans)
            np.testing.assert_allclose(a.reshape(out.shape + (n,))[..., n // 2], _np(col),
                                       rtol=1e-10, atol=1e-6)

