"""The numpy backend's lowerings (``numpy_backend.LOWERINGS``): primitives written as NumPy
code in the program in place of their impl's call, bitwise the impl's (values and gradients,
float32 and float64, non-contiguous inputs, negative indices, NaN and signed zeros), and the
impl wherever a lowering does not apply."""

from __future__ import annotations

import re

import numpy as np
import pytest
from models import train

import chainrule as cr
from chainrule import func
from chainrule.jit import numpy_backend
from chainrule.primitives import REGISTRY

_SCATTER = "] = _add("  # the lowered scatter_add's assignment in the generated source
_GATHER = re.compile(r"^    [vb]\d+ = [vbc]\d+\[", re.M)  # the lowered gather's line


def _values(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    flat[:4] = [np.nan, -0.0, np.inf, -np.inf][:flat.size]
    return x


def _index(rng, shape, n):
    return rng.integers(-n, n, shape)  # negative indices count from the end, as in NumPy


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,axis,ishape", [
    ((6, 5), 1, (6, 1)),      # cross-entropy's case: one class per row
    ((6, 5), 1, (6, 3)),      # several per row: scatter_add keeps its impl (repeats add up)
    ((6, 5), 0, (1, 5)),
    ((6, 5), -1, (6, 1)),
    ((3, 4, 5), 1, (3, 1, 5)),
    ((3, 4, 5), 2, (3, 4, 2)),
    ((7,), 0, (1,)),
])
def test_gather_and_its_gradient_bitwise_equal_to_eager(dtype, shape, axis, ishape):
    """``gather`` and its transpose ``scatter_add`` (the gradient), jitted against eager, with
    a new index at every call; the lowered lines are in the program where they apply."""
    rng = np.random.default_rng(0)
    w = cr.tensor(rng.standard_normal(ishape).astype(dtype))

    def loss(x, i):
        return (cr.gather(x, axis, i) * w).sum()

    value = cr.jit(lambda x, i: cr.gather(x, axis, i), backend="numpy")
    grad = cr.jit(func.grad(loss), backend="numpy")
    n = shape[axis]
    for call in range(3):
        x = _values(rng, shape, dtype)
        i = cr.tensor(_index(rng, ishape, n))
        got, want = value(cr.tensor(x), i), cr.gather(cr.tensor(x), axis, i)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.numpy().tobytes() == want.numpy().tobytes(), f"value, call {call}"
        xt = cr.tensor(x)
        g_got, g_want = grad(xt, i), func.grad(loss)(xt, i)
        assert g_got.numpy().tobytes() == g_want.numpy().tobytes(), f"gradient, call {call}"
    assert len(_GATHER.findall(value.source())) == 1, value.source()
    assert (_SCATTER in grad.source()) == (ishape[axis % len(shape)] == 1), grad.source()


def test_gather_of_a_non_contiguous_input():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((5, 8)).astype("float32")
    i = cr.tensor(rng.integers(0, 5, (8, 1)))
    f = cr.jit(lambda x, i: cr.gather(x.T, 1, i) * 2, backend="numpy")
    for _ in range(3):
        got = f(cr.tensor(base), i)
        want = cr.gather(cr.tensor(base).T, 1, i) * 2
        assert got.numpy().tobytes() == want.numpy().tobytes()
    assert _GATHER.search(f.source()), f.source()


def test_an_index_out_of_range_is_refused_as_eagerly():
    """The range check runs before the lowered line (a guard of the trace): a bad index
    recompiles and raises eager's IndexError, never an unchecked read."""
    x = cr.tensor(np.arange(12.0, dtype="float32").reshape(3, 4))
    f = cr.jit(lambda x, i: cr.gather(x, 1, i), backend="numpy")
    f(x, cr.tensor([[0], [1], [3]]))
    f(x, cr.tensor([[0], [1], [3]]))
    with pytest.raises(IndexError, match="out of range"):
        f(x, cr.tensor([[0], [4], [3]]))


def test_lowered_lines_equal_the_impls_directly():
    """The lowered code against the impls on arrays, outside any trace: the same bits and
    dtypes (NaN, -0.0, inf among the values; int32 and int64 indices)."""
    rng = np.random.default_rng(2)
    gather, scatter_add = REGISTRY["gather"].impl, REGISTRY["scatter_add"].impl
    for dtype in ("float32", "float64"):
        for itype in ("int32", "int64"):
            x = _values(rng, (9, 4), dtype)
            idx = rng.integers(-4, 4, (9, 1)).astype(itype)
            grids = list(np.indices(idx.shape, sparse=True))
            low = x[grids[0], idx]
            assert low.tobytes() == gather(np, x, idx, 1).tobytes()
            g = _values(rng, (9, 1), dtype)
            out = np.zeros((9, 4), dtype)
            out[grids[0], idx] = np.add(g, np.zeros((), dtype))
            want = scatter_add(np, g, idx, (9, 4), 1)
            assert out.dtype == want.dtype and out.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_sgd_steps_bitwise_with_and_without_the_lowerings(dtype, monkeypatch):
    """50 jitted MLP/SGD steps (cross-entropy: a gather and a scatter_add per step), with the
    lowerings and with every primitive calling its impl, both bitwise eager's."""
    import models

    def setup(steps):
        model, opt, sched, data, loss = models.mlp_sgd(steps)
        if dtype == "float64":
            model.double()
            data = [(x.double(), y) for x, y in data]
        return model, opt, sched, data, loss

    monkeypatch.setitem(models.SETUPS, "mlp_dtype", setup)
    eager_losses, eager_state, _ = train("mlp_dtype", 50, jit=False)
    for lower in (True, False):
        monkeypatch.setattr(numpy_backend, "LOWER", lower)
        losses, state, f = train("mlp_dtype", 50, jit=True, fullgraph=True, backend="numpy")
        assert len(f._compiles) == 1
        assert (_SCATTER in f.source()) == lower, f.source()
        assert bool(_GATHER.search(f.source())) == lower, f.source()
        for a, b in zip(eager_losses, losses):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
        assert len(state) == len(eager_state)
        for a, b in zip(eager_state, state):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _calls(jitted, fn) -> bool:
    """Whether the jitted function's program calls ``fn`` by a name bound in its globals."""
    env = jitted._program(-1).run.__globals__
    return any(v is fn and f"{k}(" in jitted.source() for k, v in env.items())


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32"])
def test_relu_bitwise_equal_to_eager_and_lowered_for_floats(dtype):
    """``relu`` (forward and its gradient) jitted against eager, NaN, inf and signed zeros
    among the values, on a transposed (non-contiguous) input too; the program calls
    ``np.maximum`` with a typed 0 for float dtypes and the impl for integers."""
    import chainrule.nn.functional as F

    rng = np.random.default_rng(3)
    f = cr.jit(lambda x: F.relu(x) * 3, backend="numpy")
    fT = cr.jit(lambda x: F.relu(x.T), backend="numpy")
    for _ in range(3):
        if dtype == "int32":
            x = rng.integers(-5, 5, (6, 7)).astype(dtype)
        else:
            x = _values(rng, (6, 7), dtype)
        for fn, eager in ((f, lambda t: F.relu(t) * 3), (fT, lambda t: F.relu(t.T))):
            got, want = fn(cr.tensor(x)), eager(cr.tensor(x))
            assert got.dtype == want.dtype
            assert got.numpy().tobytes() == want.numpy().tobytes()
    assert _calls(f, np.maximum) == (dtype != "int32"), f.source()
    if dtype == "int32":
        return
    g = cr.jit(func.grad(lambda x: (F.relu(x) * x).sum()), backend="numpy")
    for _ in range(3):
        x = cr.tensor(_values(rng, (5, 4), dtype))
        want = func.grad(lambda x: (F.relu(x) * x).sum())(x)
        assert g(x).numpy().tobytes() == want.numpy().tobytes()
