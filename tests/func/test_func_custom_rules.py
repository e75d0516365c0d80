"""Custom rules: chainrule.autograd.Function (PyTorch's interface) and func.custom_vjp."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule
from chainrule import func
from chainrule.autograd.function import Function, once_differentiable
from chainrule.errors import GraphError, ShapeError
from chainrule.testing import gradcheck, gradgradcheck

f64 = chainrule.float64


def T(a, rg=False):
    return chainrule.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def A(t):
    return t.detach().numpy()


class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x ** 2

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return t * 3 * x ** 2


class SinCos(Function):
    """Two differentiable outputs, one integer output, a non-tensor argument."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.k = k
        idx = (x > 0).long()
        ctx.mark_non_differentiable(idx)
        return (x * k).sin(), (x * k).cos(), idx

    @staticmethod
    def backward(ctx, gs, gc, gi):
        (x,) = ctx.saved_tensors
        assert gi is not None and not gi.numpy().any()  # materialized zeros
        return ctx.k * (gs * (x * ctx.k).cos() - gc * (x * ctx.k).sin()), None


def test_function_gradients_match_autograd_and_gradcheck():
    x = T([0.5, -1.0, 2.0], rg=True)
    Cube.apply(x).sum().backward()
    np.testing.assert_allclose(A(x.grad), 3 * A(x) ** 2)
    assert gradcheck(Cube.apply, (x,), check_forward=True)
    assert gradgradcheck(Cube.apply, (x,))
    assert Cube.apply(x).grad_fn.name() == "CubeBackward"


def test_function_multiple_outputs_and_non_tensor_args():
    x = T([0.3, -0.7], rg=True)
    s, c, idx = SinCos.apply(x, 2.0)
    assert not idx.requires_grad and idx.dtype == chainrule.int64
    (s * 3 + c).sum().backward()
    want = 2 * (3 * np.cos(2 * A(x)) - np.sin(2 * A(x)))
    np.testing.assert_allclose(A(x.grad), want, rtol=1e-12)
    assert gradcheck(lambda x: SinCos.apply(x, 2.0)[:2], (x,))
    assert gradgradcheck(lambda x: SinCos.apply(x, 2.0)[0], (x,))


def test_function_several_outputs_one_node_one_backward_call():
    """Several differentiable outputs: one node, one backward call with the cotangent of each
    output (zeros for an unused one, or None when materialize_grads is off), and the outputs
    are plain results (no views of a packed array)."""
    seen = []

    class Two(Function):
        @staticmethod
        def forward(ctx, x, materialize):
            ctx.set_materialize_grads(materialize)
            return x * 2, x * x

        @staticmethod
        def backward(ctx, ga, gb):
            seen.append((ga is None, gb is None))
            out = 0
            if ga is not None:
                out = out + ga * 2
            if gb is not None:
                out = out + gb * 2 * Two.x
            return out, None

    x = T([1.0, -2.0], rg=True)
    Two.x = x.detach()
    for materialize in (True, False):
        seen.clear()
        a, b = Two.apply(x, materialize)
        assert a.grad_fn is not None and b.grad_fn is not None
        assert a.grad_fn.next_functions == b.grad_fn.next_functions  # one node behind both
        assert a._data.base is None and b._data.base is None
        (g,) = chainrule.autograd.grad(b.sum(), x)
        np.testing.assert_allclose(A(g), 2 * A(x))
        (g,) = chainrule.autograd.grad((a + b).sum(), x)
        np.testing.assert_allclose(A(g), 2 + 2 * A(x))
        assert seen == [(not materialize, False), (False, False)]


def test_function_needs_input_grad_and_setup_context_style():
    seen = {}

    class Mul(Function):
        @staticmethod
        def forward(a, b):
            return a * b

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)
            seen["needs"] = ctx.needs_input_grad

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a

    a, b = T([1.0, 2.0], rg=True), T([3.0, 4.0])
    Mul.apply(a, b).sum().backward()
    assert seen["needs"] == (True, False)
    np.testing.assert_allclose(A(a.grad), [3.0, 4.0])
    with chainrule.no_grad():
        assert not Mul.apply(a, b).requires_grad


def test_function_under_transforms():
    x = T([0.5, 1.5])
    np.testing.assert_allclose(A(func.grad(lambda x: Cube.apply(x).sum())(x)), 3 * A(x) ** 2)
    gg = func.grad(lambda x: func.grad(lambda z: Cube.apply(z[0]))(x).sum())(x)
    np.testing.assert_allclose(A(gg), [6 * 0.5, 0.0])
    _, t = func.jvp(Cube.apply, (x,), (T([1.0, 2.0]),))
    np.testing.assert_allclose(A(t), 3 * A(x) ** 2 * [1.0, 2.0])
    np.testing.assert_allclose(A(func.vmap(func.grad(lambda z: Cube.apply(z).sum()))(
        T([[1.0], [2.0]]))), [[3.0], [12.0]])
    np.testing.assert_allclose(A(func.hessian(lambda x: Cube.apply(x).sum())(x)),
                               np.diag(6 * A(x)))
    (hv,) = func.hvp(lambda x: Cube.apply(x).sum(), (x,), (T([1.0, 1.0]),))
    np.testing.assert_allclose(A(hv), 6 * A(x))


def test_function_under_vmap_differentiated_from_outside_is_refused():
    w = T([1.0, 2.0])
    with pytest.raises(RuntimeError, match="outside the vmap"):
        func.grad(lambda w: func.vmap(lambda x: Cube.apply(x * w).sum())(T([[1.0, 1.0]])).sum())(w)
    x = T([[1.0], [2.0]], rg=True)
    with pytest.raises(RuntimeError, match="outside the vmap"):
        func.vmap(Cube.apply)(x)
    with chainrule.no_grad():  # nothing to differentiate: fine
        np.testing.assert_allclose(A(func.vmap(Cube.apply)(x)), A(x) ** 3)
    inner = func.vmap(func.grad(lambda z: Cube.apply(z * w).sum()))(T([[1.0, 1.0], [2.0, 0.5]]))
    np.testing.assert_allclose(A(inner), 3 * (np.array([[1.0, 1.0], [2.0, 0.5]]) * A(w)) ** 2
                               * A(w))


def test_function_under_vmap_inside_jvp_is_refused():
    with pytest.raises(RuntimeError, match="vmap inside jvp"):
        func.jvp(func.vmap(lambda r: Cube.apply(r).sum()), (T([[1.0], [2.0]]),),
                 (T([[1.0], [1.0]]),))


def test_function_errors():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, g):
            return g

    x = T([1.0, 2.0], rg=True)
    with pytest.raises(GraphError, match="returned 1 gradient"):
        Bad.apply(x, x).sum().backward()

    class WrongShape(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return chainrule.ones(3, dtype=f64)

    with pytest.raises(ShapeError, match="shape"):
        WrongShape.apply(x).sum().backward()

    class NoJvp(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    with pytest.raises(RuntimeError, match="jvp rule"):
        func.jvp(NoJvp.apply, (x.detach(),), (x.detach(),))

    class NoBackward(Function):
        @staticmethod
        def forward(ctx, x):
            return x

    with pytest.raises(TypeError, match="backward"):
        NoBackward.apply(x)


def test_saved_tensor_modified_in_place_is_detected():
    class Square(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * g * x

    x = T([1.0, 2.0], rg=True)
    h = x * 1
    y = Square.apply(h)
    with chainrule.no_grad():
        h.mul_(3)
    with pytest.raises(GraphError, match="in-place"):
        y.sum().backward()


def test_once_differentiable():
    class Double(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            return g * 2

    x = T([1.0], rg=True)
    (g,) = chainrule.autograd.grad(Double.apply(x).sum(), x)
    assert float(g) == 2.0
    (g,) = chainrule.autograd.grad(Double.apply(x).sum(), x, create_graph=True)
    assert float(g) == 2.0 and not g.requires_grad


# ---------------------------------------------------------------- custom_vjp
def test_custom_vjp_basic_pytrees_and_grad_of_grad():
    @func.custom_vjp
    def f(x, p):
        return {"y": (x * p["w"]).sin()}

    def fwd(x, p):
        z = x * p["w"]
        return {"y": z.sin()}, (x, p["w"], z.cos())

    def bwd(res, g):
        x, w, c = res
        gz = g["y"] * c
        return gz * w, {"w": gz * x}

    f.defvjp(fwd, bwd)
    x, w = T([0.2, 0.4]), T([1.5, -0.5])
    gx, gp = func.grad(lambda x, p: f(x, p)["y"].sum(), argnums=(0, 1))(x, {"w": w})
    np.testing.assert_allclose(A(gx), np.cos(A(x) * A(w)) * A(w), rtol=1e-12)
    np.testing.assert_allclose(A(gp["w"]), np.cos(A(x) * A(w)) * A(x), rtol=1e-12)
    # the backward is written in chainrule ops, so it is differentiable again
    h = func.jacrev(func.grad(lambda x: f(x, {"w": w})["y"].sum()))(x)
    np.testing.assert_allclose(A(h), np.diag(-np.sin(A(x) * A(w)) * A(w) ** 2), rtol=1e-12)
    assert gradcheck(lambda x: f(x, {"w": w})["y"], (x.requires_grad_(),))


def test_custom_vjp_nondiff_argnums_clipping_and_errors():
    def clip(lo, x):
        return x

    f = func.custom_vjp(clip, nondiff_argnums=(0,))
    f.defvjp(lambda lo, x: (x, None), lambda lo, res, g: (g.clamp(-lo, lo),))
    g = func.grad(lambda x: (f(0.5, x) * T([10.0, 0.1])).sum())(T([1.0, 1.0]))
    np.testing.assert_allclose(A(g), [0.5, 0.1])
    np.testing.assert_allclose(A(f(0.5, T([2.0]))), [2.0])  # no grad needed: fun itself
    g = func.vmap(func.grad(lambda x: (f(0.5, x) * 10).sum()))(T([[1.0], [2.0]]))
    np.testing.assert_allclose(A(g), [[0.5], [0.5]])
    with pytest.raises(RuntimeError, match="forward-mode"):
        func.jvp(lambda x: f(0.5, x), (T([1.0]),), (T([1.0]),))
    h = func.custom_vjp(lambda x: x)
    with pytest.raises(TypeError, match="before defvjp"):
        h(T([1.0]))
    h.defvjp(lambda x: (x, None), lambda r, g: g)
    with pytest.raises(TypeError, match="one cotangent per"):
        func.grad(lambda x: h(x).sum())(T([1.0]))
