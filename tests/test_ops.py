"""Op tests generated from the op table (tests/op_table.py).

For every row: the forward pass against the NumPy reference in each of the row's dtypes; the
method form against the function form; reverse mode against central differences along random
directions (float64, ``chainrule.testing.gradcheck``); second order (``gradgradcheck``); the
row's expected errors. Then property-based tests (hypothesis) for broadcasting, reductions and
indexing, and the few conventions a table cannot state (how ties share a gradient).
"""

from __future__ import annotations

import re
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule
from chainrule.backend import cuda_available
from chainrule.testing import GradcheckError, gradcheck, gradgradcheck
from op_table import (
    FLOATS,
    ISSUE_OPS,
    NO_ROW,
    OP_TABLE,
    Maker,
    chainrule_call,
    dtype_params,
    numpy_call,
    outputs,
    rows,
    samples,
)


def _id(p):
    return p.name if hasattr(p, "name") and not isinstance(p, str) else str(p)


def _pid(params):
    return [f"{r.name}-{d}" for r, d in params]


def _as_array(x):
    if isinstance(x, chainrule.Tensor):
        return np.asarray(x.detach())
    return np.asarray(x)


def assert_matches_reference(out, expected, row, dtype, desc):
    """Shapes equal, bool-ness equal, values equal (exact for ints/bools, else to tolerance)."""
    outs, exps = outputs(out), outputs(expected)
    assert len(outs) == len(exps), f"{row.name} [{desc}]: {len(outs)} outputs, reference " \
                                   f"{len(exps)}"
    for k, (o, e) in enumerate(zip(outs, exps)):
        assert isinstance(o, chainrule.Tensor), \
            f"{row.name} [{desc}]: output {k} is {type(o).__name__}, not a Tensor"
        a, b = _as_array(o), np.asarray(e)
        where = f"{row.name} ({dtype}) [{desc}] output {k}"
        assert a.shape == b.shape, f"{where}: shape {a.shape}, reference {b.shape}"
        assert (a.dtype.kind == "b") == (b.dtype.kind == "b"), \
            f"{where}: dtype {o.dtype}, reference {b.dtype}"
        if a.dtype.kind == "f":
            rtol, atol = row.fwd_tol(o.dtype.name)
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=where)
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)


# ================================================================ forward
@pytest.mark.parametrize("row,dtype", dtype_params(), ids=_pid(dtype_params()))
def test_forward(row, dtype):
    for s in samples(row, dtype):
        args, kwargs, _ = chainrule_call(s)
        out = row.op(*args, **kwargs)
        nargs, nkwargs = numpy_call(s, upcast=True)
        with np.errstate(all="ignore"):
            expected = row.ref(*nargs, **nkwargs)
        assert_matches_reference(out, expected, row, dtype, s.desc)
        if dtype in FLOATS and row.keeps_float_dtype:
            for o in outputs(out):
                if o.dtype.is_floating_point:
                    assert o.dtype.name == dtype, \
                        f"{row.name} [{s.desc}]: {dtype} inputs gave a {o.dtype.name} result"


def test_every_row_has_a_sample_per_dtype():
    for row in OP_TABLE:
        for d in row.dtypes:
            assert samples(row, d), f"{row.name} has no {d} samples"


@pytest.mark.parametrize("row", rows("method"), ids=_id)
def test_method_matches_function(row):
    for s in samples(row, "float64" if "float64" in row.dtypes else row.dtypes[0]):
        args, kwargs, _ = chainrule_call(s, requires_grad=False)
        via_fn = outputs(row.op(*args, **kwargs))
        via_method = outputs(getattr(args[0], row.method)(*args[1:], **kwargs))
        assert len(via_fn) == len(via_method)
        for a, b in zip(via_fn, via_method):
            assert a.dtype is b.dtype and a.shape == b.shape, f"{row.name} [{s.desc}]"
            np.testing.assert_array_equal(_as_array(a), _as_array(b), err_msg=row.name)


# ================================================================ derivatives
def _grad_samples(row):
    out = []
    for s in samples(row, "float64"):
        if s.kink:
            continue
        args, kwargs, grads = chainrule_call(s)
        if grads:
            out.append((s, args, kwargs))
    return out


def _fn(row, kwargs):
    return lambda *a: row.op(*a, **kwargs)


# rows whose samples all sit on kinks on purpose (ties) are there for the PyTorch oracle
_FD_ROWS = [r for r in rows("grad") if any(not s.kink for s in samples(r, "float64"))]


@pytest.mark.parametrize("row", _FD_ROWS, ids=_id)
def test_grad(row):
    cases = _grad_samples(row)
    assert cases, f"{row.name}: no differentiable samples"
    for s, args, kwargs in cases:
        try:
            gradcheck(_fn(row, kwargs), args)
        except GradcheckError as e:
            raise AssertionError(f"{row.name} [{s.desc}]: {e}") from None


@pytest.mark.parametrize("row", [r for r in _FD_ROWS if r.gradgrad], ids=_id)
def test_gradgrad(row):
    for s, args, kwargs in _grad_samples(row):
        try:
            gradgradcheck(_fn(row, kwargs), args)
        except GradcheckError as e:
            raise AssertionError(f"{row.name} [{s.desc}]: {e}") from None


@pytest.mark.parametrize("row", [r for r in OP_TABLE if not r.grad], ids=_id)
def test_not_differentiable_outputs_do_not_require_grad(row):
    for s in samples(row, "float64" if "float64" in row.dtypes else row.dtypes[0]):
        args, kwargs, _ = chainrule_call(s)
        for o in outputs(row.op(*args, **kwargs)):
            if not o.dtype.is_floating_point:
                assert not o.requires_grad, f"{row.name} [{s.desc}]: an integer/bool output " \
                                            "requires grad"


# ================================================================ CPU vs GPU
@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize("row", OP_TABLE, ids=_id)
def test_gpu_matches_cpu(row):
    rng = np.random.default_rng(0)
    for dtype in row.dtypes:
        for s in samples(row, dtype):
            cpu_args, cpu_kwargs, cpu_ins = chainrule_call(s)
            gpu_args, gpu_kwargs, gpu_ins = chainrule_call(s, device="cuda")
            cpu, gpu = outputs(row.op(*cpu_args, **cpu_kwargs)), \
                outputs(row.op(*gpu_args, **gpu_kwargs))
            where = f"{row.name} ({dtype}) [{s.desc}]"
            assert len(cpu) == len(gpu), where
            for a, b in zip(cpu, gpu):
                assert b.device.type == "cuda", f"{where}: result on {b.device}"
                assert a.dtype is b.dtype and a.shape == b.shape, where
                rtol, atol = row.fwd_tol(a.dtype.name)
                np.testing.assert_allclose(_as_array(b.cpu()), _as_array(a), rtol=rtol,
                                           atol=atol, err_msg=where)
            if dtype != "float64" or not row.grad or not cpu_ins:
                continue
            pairs = [(a, b) for a, b in zip(cpu, gpu) if a.requires_grad]
            if not pairs:
                continue
            vs = [rng.standard_normal(a.shape) for a, _ in pairs]
            gc = chainrule.autograd.grad([a for a, _ in pairs], cpu_ins, allow_unused=True,
                                         grad_outputs=[chainrule.tensor(v) for v in vs])
            gg = chainrule.autograd.grad([b for _, b in pairs], gpu_ins, allow_unused=True,
                                         grad_outputs=[chainrule.tensor(v, device="cuda")
                                                       for v in vs])
            for a, b in zip(gc, gg):
                assert (a is None) == (b is None), where
                if a is not None:
                    np.testing.assert_allclose(_as_array(b.cpu()), _as_array(a), rtol=1e-9,
                                               atol=1e-12, err_msg=f"{where}: gradient")


# ================================================================ expected errors
_ERROR_ROWS = [r for r in OP_TABLE if r.errors is not None]


@pytest.mark.parametrize("row", _ERROR_ROWS, ids=_id)
def test_expected_errors(row):
    for e in row.errors(Maker("float64")):
        args, kwargs, _ = chainrule_call(e.sample)
        before = [(a._version, np.asarray(a.detach()).copy()) for a in args
                  if isinstance(a, chainrule.Tensor)]
        with pytest.raises(e.error) as info:
            row.op(*args, **kwargs)
        msg = str(info.value)
        for pattern in e.match:
            assert re.search(pattern, msg), f"{row.name}: error message {msg!r} lacks " \
                                            f"{pattern!r}"
        after = [(a._version, np.asarray(a.detach())) for a in args
                 if isinstance(a, chainrule.Tensor)]
        for (v0, d0), (v1, d1) in zip(before, after):
            assert v0 == v1
            np.testing.assert_array_equal(d0, d1)


def test_table_covers_the_issue_op_list():
    names = {r.name for r in OP_TABLE} | {r.method for r in OP_TABLE if r.method}
    missing = [n for n in ISSUE_OPS if n not in names]
    assert not missing, f"ops of the issue without a row in the op table: {missing}"


def test_every_public_op_has_a_row():
    """A public op of chainrule.ops without a row (by its name, a ``name_variant`` row, its
    method, or the same function object) fails here, unless NO_ROW says why it has none."""
    by_fn = {id(r.op) for r in OP_TABLE}
    names = {r.name for r in OP_TABLE} | {r.method for r in OP_TABLE if r.method}
    missing = []
    for n in chainrule.ops.__all__:
        fn = getattr(chainrule.ops, n)
        if isinstance(fn, types.ModuleType) or n in NO_ROW:
            continue
        if n in names or id(fn) in by_fn or any(r.name.startswith(n + "_") for r in OP_TABLE):
            continue
        missing.append(n)
    assert not missing, f"public ops without a row in tests/op_table.py: {missing}"
    assert not [n for n in NO_ROW if n not in chainrule.ops.__all__], "stale NO_ROW entries"


def test_rows_with_grad_have_float64_samples():
    for r in rows("grad"):
        assert "float64" in r.dtypes, f"{r.name}: derivative checks need float64 samples"


# ================================================================ the checker can fail
def test_gradcheck_catches_a_wrong_gradient():
    x = chainrule.randn(3, dtype=chainrule.float64, requires_grad=True)
    x.register_hook(lambda g: g * 1.01)
    with pytest.raises(GradcheckError, match="finite differences"):
        gradcheck(lambda t: (t * t).sum(), (x,))


def test_gradgradcheck_catches_a_wrong_second_derivative():
    x = chainrule.randn(3, dtype=chainrule.float64, requires_grad=True)

    def f(t):
        # t^3 with a hook that detaches the gradient reaching t*t: first derivatives stay
        # right, but the double backward loses a term
        u = t * t
        u.register_hook(lambda g: g.detach())
        return u * t

    gradcheck(f, (x,))
    with pytest.raises(GradcheckError):
        gradgradcheck(f, (x,))


def test_gradcheck_refuses_float32():
    x = chainrule.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda t: t * 2, (x,))


# ================================================================ conventions
def _grad_of(fn, *values):
    xs = [chainrule.tensor(v, dtype=chainrule.float64, requires_grad=True) for v in values]
    fn(*xs).sum().backward()
    return [x.grad.numpy() for x in xs]


def test_maximum_and_minimum_split_ties_evenly():
    ga, gb = _grad_of(chainrule.maximum, [1.0, 2.0, 3.0], [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(ga, [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(gb, [0.5, 0.0, 0.5])
    ga, gb = _grad_of(chainrule.minimum, [1.0, 2.0, 3.0], [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(ga, [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(gb, [0.5, 1.0, 0.5])


def test_amax_and_full_max_share_the_gradient_among_ties():
    (g,) = _grad_of(lambda x: chainrule.amax(x, dim=1), [[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(g, [[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]])
    (g,) = _grad_of(lambda x: x.max(), [1.0, 3.0, 3.0])
    np.testing.assert_array_equal(g, [0.0, 0.5, 0.5])


def test_max_with_dim_sends_the_gradient_to_the_returned_index():
    # PyTorch: max(x, dim) is (values, indices) and the gradient of values flows to
    # x[indices] only, even with ties.
    x = chainrule.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=chainrule.float64,
                         requires_grad=True)
    values, indices = chainrule.max(x, dim=1)
    values.sum().backward()
    expected = np.zeros((2, 3))
    expected[np.arange(2), indices.numpy()] = 1.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_max_min_with_dim_have_values_and_indices_fields():
    x = chainrule.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    r = chainrule.max(x, dim=1)
    assert r.values.tolist() == [5.0, 7.0] and r.indices.tolist() == [1, 0]
    assert r.indices.dtype is chainrule.int64
    r = x.min(dim=0, keepdim=True)
    assert r.values.shape == (1, 3) and r.indices.tolist() == [[0, 1, 0]]


def test_relu_and_abs_gradients_at_zero_are_zero():
    (g,) = _grad_of(chainrule.relu, [0.0, -1.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])
    (g,) = _grad_of(chainrule.abs, [0.0, -1.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, -1.0, 1.0])


# ================================================================ property-based
_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def _sum_to(g, shape):
    """Reference 'unbroadcast': sum g down to ``shape``."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


_BINARY = {
    "add": (lambda a, b: a + b, lambda a, b, v: (v, v)),
    "sub": (lambda a, b: a - b, lambda a, b, v: (v, -v)),
    "mul": (lambda a, b: a * b, lambda a, b, v: (v * b, v * a)),
    "div": (lambda a, b: a / b, lambda a, b, v: (v / b, -v * a / (b * b))),
}


@_SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                max_side=3),
       op=st.sampled_from(sorted(_BINARY)), seed=st.integers(0, 2 ** 16))
def test_broadcasting_property(shapes, op, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.uniform(0.5, 2.0, sa)
    b = rng.uniform(0.5, 2.0, sb)
    f, rule = _BINARY[op]
    ta = chainrule.tensor(a, requires_grad=True)
    tb = chainrule.tensor(b, requires_grad=True)
    out = f(ta, tb)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.numpy(force=True), f(a, b), rtol=1e-12)
    v = rng.standard_normal(shapes.result_shape)
    out.backward(chainrule.tensor(v, dtype=chainrule.float64))
    ea, eb = rule(np.broadcast_to(a, v.shape), np.broadcast_to(b, v.shape), v)
    assert ta.grad.shape == sa and tb.grad.shape == sb
    np.testing.assert_allclose(ta.grad.numpy(), _sum_to(ea, sa), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), _sum_to(eb, sb), rtol=1e-12, atol=1e-12)


@st.composite
def _reduction_case(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    nd = len(shape)
    if nd and draw(st.booleans()):
        dims = draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd,
                             unique_by=lambda d: d % nd))
        dim = dims[0] if len(dims) == 1 and draw(st.booleans()) else tuple(dims)
    else:
        dim = None
    return shape, dim, draw(st.booleans()), draw(st.integers(0, 2 ** 16))


@_SETTINGS
@given(case=_reduction_case(), op=st.sampled_from(["sum", "mean", "amax", "amin"]))
def test_reduction_property(case, op):
    shape, dim, keepdim, seed = case
    rng = np.random.default_rng(seed)
    x = rng.permutation(np.arange(float(np.prod(shape)))).reshape(shape)  # no ties
    axis = None if dim is None else (tuple(d % len(shape) for d in dim)
                                     if isinstance(dim, tuple) else dim % len(shape))
    npf = {"sum": np.sum, "mean": np.mean, "amax": np.max, "amin": np.min}[op]
    expected = npf(x, axis=axis, keepdims=keepdim)
    t = chainrule.tensor(x, requires_grad=True)
    kwargs = {"keepdim": keepdim} if dim is None else {"dim": dim, "keepdim": keepdim}
    out = getattr(chainrule, op)(t, **kwargs)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(force=True), expected, rtol=1e-12)
    v = rng.standard_normal(out.shape)
    out.backward(chainrule.tensor(v, dtype=chainrule.float64))
    if keepdim:
        vk = v
    elif axis is None:
        vk = v.reshape((1,) * len(shape))
    else:
        vk = np.expand_dims(v, axis)
    vk = np.broadcast_to(vk, shape)
    if op == "sum":
        g = vk
    elif op == "mean":
        g = vk * (np.size(expected) / x.size)
    else:
        ext = np.broadcast_to(np.asarray(npf(x, axis=axis, keepdims=True)), shape)
        g = np.where(x == ext, vk, 0.0)
    np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-12, atol=1e-12)


@st.composite
def _basic_index_case(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    return shape, index


@_SETTINGS
@given(case=_basic_index_case(), seed=st.integers(0, 2 ** 16))
def test_basic_indexing_property(case, seed):
    shape, index = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    t = chainrule.tensor(x, requires_grad=True)
    out = t[index]
    expected = x[index]
    assert out.shape == expected.shape, f"x{shape}[{index!r}]"
    np.testing.assert_array_equal(out.numpy(force=True), expected)
    v = rng.standard_normal(expected.shape)
    out.backward(chainrule.tensor(v, dtype=chainrule.float64))
    g = np.zeros(shape)
    g[index] += v
    np.testing.assert_array_equal(t.grad.numpy(), g)


@st.composite
def _advanced_index_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    index = draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(
        min_dims=0, max_dims=2, max_side=3)))
    return shape, index


@_SETTINGS
@given(case=_advanced_index_case(), seed=st.integers(0, 2 ** 16),
       as_tensor=st.booleans())
def test_integer_array_indexing_property(case, seed, as_tensor):
    shape, index = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    t = chainrule.tensor(x, requires_grad=True)
    idx = tuple(chainrule.tensor(i) if as_tensor else i for i in index)
    out = t[idx]
    expected = x[index]
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(force=True), expected)
    v = rng.standard_normal(expected.shape)
    out.backward(chainrule.tensor(v, dtype=chainrule.float64))
    g = np.zeros(shape)
    np.add.at(g, index, v)  # repeated indices accumulate
    np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-12, atol=1e-12)


@_SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
       seed=st.integers(0, 2 ** 16))
def test_boolean_mask_indexing_property(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    mask = rng.random(shape) < 0.5
    t = chainrule.tensor(x, requires_grad=True)
    out = t[chainrule.tensor(mask)]
    np.testing.assert_array_equal(out.numpy(force=True), x[mask])
    v = rng.standard_normal(out.shape)
    out.backward(chainrule.tensor(v, dtype=chainrule.float64))
    g = np.zeros(shape)
    g[mask] = v
    np.testing.assert_array_equal(t.grad.numpy(), g)


def test_binary_cross_entropy_at_saturated_probabilities():
    # p = 0 or 1 happens in practice (a float32 sigmoid saturates); PyTorch clamps the logs at
    # -100 and its gradient there is finite, so a NaN cannot poison the weights upstream
    z = chainrule.tensor([-800.0, 800.0, -800.0, 800.0], dtype=chainrule.float64,
                         requires_grad=True)
    p = chainrule.sigmoid(z)
    assert p.tolist() == [0.0, 1.0, 0.0, 1.0]
    p.retain_grad()
    t = chainrule.tensor([1.0, 0.0, 0.0, 1.0], dtype=chainrule.float64)
    with np.errstate(all="ignore"):
        loss = chainrule.nn.functional.binary_cross_entropy(p, t, reduction="sum")
        assert loss.item() == 200.0
        loss.backward()
    g = p.grad.numpy()
    assert np.all(np.isfinite(g)), f"binary_cross_entropy gradient at p in {{0, 1}}: {g}"
    assert g[0] <= 0 <= g[1], "the gradient must not push p away from the target"
    assert np.all(np.isfinite(z.grad.numpy()))
