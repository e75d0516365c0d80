"""chainrule.utils.checkpoint: same gradients as the plain computation (first and second
order, autograd.grad, closed-over parameters, dropout), and a measured memory saving."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import chainrule
import chainrule.nn.functional as NF
from chainrule import func
from chainrule.autograd.graph import FORWARD
from chainrule.errors import GraphError
from chainrule.utils import checkpoint, checkpoint_sequential

f64 = chainrule.float64


def A(t):
    return t.detach().numpy()


def _params(seed=0, width=6, depth=3):
    rng = np.random.default_rng(seed)
    return [chainrule.tensor(rng.standard_normal((width, width)) / width ** 0.5,
                             requires_grad=True) for _ in range(depth)]


def _block(ws):
    def f(h):
        for w in ws:
            h = (h @ w).tanh()
        return h
    return f


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradients_equal_plain(use_reentrant):
    ws = _params()
    x = chainrule.tensor(np.random.default_rng(1).standard_normal((4, 6)), requires_grad=True)
    f = _block(ws)
    (f(x) ** 2).sum().backward()
    plain = [A(w.grad) for w in ws] + [A(x.grad)]
    for w in ws:
        w.grad = None
    x.grad = None
    y = checkpoint(f, x, use_reentrant=use_reentrant)
    (y ** 2).sum().backward()
    for a, b in zip([A(w.grad) for w in ws] + [A(x.grad)], plain):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert FORWARD.levels == 0


def test_activations_are_dropped_then_recomputed_once():
    calls = []
    ws = _params()

    def f(h):
        calls.append(1)
        return _block(ws)(h)

    x = chainrule.tensor(np.ones((2, 6)), requires_grad=True)
    y = checkpoint(f, x)
    node = y.grad_fn
    assert node.saved_out is None  # tanh saves its output: dropped
    y.sum().backward(retain_graph=True)
    assert len(calls) == 2
    y.sum().backward()  # arrays were put back and retained: no third run
    assert len(calls) == 2


def test_autograd_grad_and_second_order():
    ws = _params()
    x = chainrule.tensor(np.random.default_rng(2).standard_normal((3, 6)), requires_grad=True)
    f = _block(ws)

    def hess_row(fn):
        (g,) = chainrule.autograd.grad((fn(x) ** 2).sum(), x, create_graph=True)
        return A(chainrule.autograd.grad(g.sum(), ws[0])[0])

    np.testing.assert_allclose(hess_row(lambda x: checkpoint(f, x)), hess_row(f), rtol=1e-10)
    g = func.grad(lambda x: checkpoint(f, x).sum())(x.detach())
    np.testing.assert_allclose(A(g), A(func.grad(lambda x: f(x).sum())(x.detach())),
                               rtol=1e-12)


def test_inside_vmap_and_jvp_it_just_runs():
    ws = [w.detach() for w in _params()]
    f = _block(ws)
    X = chainrule.tensor(np.random.default_rng(4).standard_normal((3, 2, 6)))
    np.testing.assert_allclose(A(func.vmap(lambda x: checkpoint(f, x))(X)), A(func.vmap(f)(X)),
                               rtol=1e-12)
    g = func.vmap(func.grad(lambda x: checkpoint(f, x).sum()))(X)
    np.testing.assert_allclose(A(g), A(func.vmap(func.grad(lambda x: f(x).sum()))(X)),
                               rtol=1e-12)
    _, t = func.jvp(lambda x: checkpoint(f, x), (X[0],), (X[1],))
    np.testing.assert_allclose(A(t), A(func.jvp(f, (X[0],), (X[1],))[1]), rtol=1e-12)


def test_rng_state_is_replayed_for_dropout():
    ws = _params()
    x = chainrule.tensor(np.ones((8, 6)), requires_grad=True)

    def f(h):
        return NF.dropout(h @ ws[0], 0.5, training=True).tanh()

    chainrule.manual_seed(5)
    y = checkpoint(f, x)
    y.sum().backward()
    g_ckpt = A(ws[0].grad)
    ws[0].grad = None
    chainrule.manual_seed(5)
    f(x).sum().backward()
    np.testing.assert_allclose(g_ckpt, A(ws[0].grad), rtol=1e-12)


def test_sequential_and_checks():
    ws = _params(depth=4)
    fns = [lambda h, w=w: (h @ w).tanh() for w in ws]
    x = chainrule.tensor(np.random.default_rng(3).standard_normal((2, 6)), requires_grad=True)
    (checkpoint_sequential(fns, 2, x) ** 2).sum().backward()
    g = A(x.grad)
    x.grad = None
    (_block(ws)(x) ** 2).sum().backward()
    np.testing.assert_allclose(g, A(x.grad), rtol=1e-12)
    with pytest.raises(TypeError, match="callable"):
        checkpoint(3, x)
    flip = []

    def unstable(h):
        flip.append(1)
        return h.exp() if len(flip) == 1 else h.exp().exp()

    y = checkpoint(unstable, x)
    with pytest.raises(GraphError, match="different sequence"):
        y.sum().backward()


def _peak(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_memory_saving():
    """Deep MLP (16 tanh layers of width 128, batch 1024, float64): peak traced memory of
    forward + backward, checkpointed in 4 segments against plain (measured: 9.0 MB against
    19.1 MB)."""
    rng = np.random.default_rng(0)
    depth, width, batch = 16, 128, 1024
    ws = [chainrule.tensor(rng.standard_normal((width, width)) / width ** 0.5,
                           requires_grad=True) for _ in range(depth)]
    x = chainrule.tensor(rng.standard_normal((batch, width)))
    layers = [lambda h, w=w: (h @ w).tanh() for w in ws]

    def plain():
        h = x
        for f in layers:
            h = f(h)
        h.sum().backward()

    def ckpt():
        checkpoint_sequential(layers, 4, x).sum().backward()

    for w in ws:
        w.grad = None
    p_plain = _peak(plain)
    g_plain = [A(w.grad).copy() for w in ws]
    for w in ws:
        w.grad = None
    p_ckpt = _peak(ckpt)
    for w, g in zip(ws, g_plain):
        np.testing.assert_allclose(A(w.grad), g, rtol=1e-10)
    act = batch * width * 8  # one activation
    assert p_plain > 14 * act  # plain keeps every layer's activation
    assert p_ckpt < p_plain / 1.8, (p_ckpt / 2 ** 20, p_plain / 2 ** 20)


def test_checkpoint_around_a_multi_output_primitive():
    """An LSTM (lstm_scan: three outputs, one node) inside the region, with its output and
    its final cell state used: the recomputation refills the node's saved outputs and the
    gradients equal those without checkpointing."""
    chainrule.manual_seed(0)
    m = chainrule.nn.LSTM(3, 4, dtype=chainrule.float64)
    x = chainrule.randn(5, 2, 3, dtype=chainrule.float64, requires_grad=True)
    params = [x, *m.parameters()]

    def region(x):
        out, (_, c) = m(x)
        return out, c

    out, c = region(x)
    want = chainrule.autograd.grad(out.sum() + (c * c).sum(), params)
    out, c = checkpoint(region, x)
    got = chainrule.autograd.grad(out.sum() + (c * c).sum(), params)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)
