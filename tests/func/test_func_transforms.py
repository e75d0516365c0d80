"""grad, value_and_grad, vjp, jvp, linearize, jacrev, jacfwd, hessian, hvp: known
derivatives, finite differences, argnums/has_aux/pytrees, compositions, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import chainrule
from chainrule import func
from chainrule.autograd import forward as fwad
from chainrule.autograd.graph import FORWARD
from chainrule.errors import ShapeError
from chainrule.testing import gradcheck, gradgradcheck

f64 = chainrule.float64


def T(a):
    return chainrule.tensor(np.asarray(a, dtype=np.float64))


def A(t):
    return t.detach().numpy()


def rnd(*shape, seed=0):
    return T(np.random.default_rng(seed).standard_normal(shape))


def fd_grad(f, x, eps=1e-6):
    """Central-difference gradient of a scalar function of one array."""
    x = A(x)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (float(f(T(x + e))) - float(f(T(x - e)))) / (2 * eps)
    return g


def fd_jac(f, x, eps=1e-6):
    x = A(x)
    out = A(f(T(x)))
    J = np.zeros(out.shape + x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        J[(Ellipsis,) + i] = (A(f(T(x + e))) - A(f(T(x - e)))) / (2 * eps)
    return J


@pytest.fixture(autouse=True)
def _levels_closed():
    yield
    assert FORWARD.levels == 0 and not fwad.STACK


def smooth(x):
    return (x.sin() * x.exp() + x ** 3 / (1 + x * x)).sum()


# ================================================================ grad
def test_grad_known_and_fd():
    x = rnd(5)
    np.testing.assert_allclose(A(func.grad(lambda x: (x ** 3).sum())(x)), 3 * A(x) ** 2,
                               rtol=1e-12)
    np.testing.assert_allclose(A(func.grad(smooth)(x)), fd_grad(smooth, x), rtol=1e-7,
                               atol=1e-8)


def test_grad_leaves_user_tensors_alone_and_returns_no_graph():
    x = rnd(3)
    w = rnd(3, seed=1).requires_grad_()
    g = func.grad(lambda x: (x * w).sum())(x)
    assert not x.requires_grad and x.grad is None and w.grad is None
    assert g.grad_fn is None and not g.requires_grad
    np.testing.assert_allclose(A(g), A(w))
    gw = func.grad(lambda w: (w * w).sum())(w)  # a tensor that requires grad by itself
    assert gw.grad_fn is None and w.grad is None


def test_grad_argnums_has_aux_kwargs_pytrees():
    x, y = rnd(3), rnd(3, seed=1)

    def f(a, b, scale=1.0):
        return (a * b).sum() * scale, {"a2": a * 2}

    gy, aux = func.grad(f, argnums=1, has_aux=True)(x, y, scale=3.0)
    np.testing.assert_allclose(A(gy), 3 * A(x))
    np.testing.assert_allclose(A(aux["a2"]), 2 * A(x))
    gx, gy = func.grad(lambda a, b: (a * b).sum(), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(A(gx), A(y))
    np.testing.assert_allclose(A(gy), A(x))
    params = {"w": rnd(2, 3), "b": [rnd(3, seed=2), None]}
    g = func.grad(lambda p: ((p["w"] * 2).sum() + (p["b"][0] ** 2).sum()))(params)
    assert set(g) == {"w", "b"} and g["b"][1] is None
    np.testing.assert_allclose(A(g["w"]), 2 * np.ones((2, 3)))
    np.testing.assert_allclose(A(g["b"][0]), 2 * A(params["b"][0]))
    g = func.grad(lambda a, b: (a * 2).sum(), argnums=-1)(x, y)  # unused argument: zeros
    np.testing.assert_array_equal(A(g), np.zeros(3))


def test_value_and_grad():
    x = rnd(4)
    v, g = func.value_and_grad(lambda x: (x ** 2).sum())(x)
    assert float(v) == pytest.approx(float((A(x) ** 2).sum()))
    np.testing.assert_allclose(A(g), 2 * A(x))
    (v, aux), g = func.value_and_grad(lambda x: ((x ** 2).sum(), x.shape), has_aux=True)(x)
    assert aux == (4,)


def test_grad_works_under_no_grad():
    with chainrule.no_grad():
        g = func.grad(lambda x: (x ** 2).sum())(T([1.0, 2.0]))
    np.testing.assert_allclose(A(g), [2.0, 4.0])


def test_higher_order_grads():
    x = T(1.5)
    f = lambda x: x ** 4
    assert float(func.grad(func.grad(func.grad(f)))(x)) == pytest.approx(24 * 1.5)
    assert float(func.grad(func.grad(func.grad(func.grad(f))))(x)) == pytest.approx(24)
    g2 = func.grad(func.grad(lambda x: smooth(x.reshape(1)), argnums=0))(T(0.3))
    h = func.hessian(lambda x: smooth(x))(T([0.3]))
    assert float(g2) == pytest.approx(float(A(h)[0, 0]), rel=1e-12)


def test_grad_errors():
    with pytest.raises(ShapeError, match="single element"):
        func.grad(lambda x: x * 2)(rnd(3))
    with pytest.raises(TypeError, match="must return a Tensor"):
        func.grad(lambda x: 1.0)(rnd(3))
    with pytest.raises(TypeError, match="floating point"):
        func.grad(lambda x: x.sum())(chainrule.tensor([1, 2]))
    with pytest.raises(TypeError, match="Tensors"):
        func.grad(lambda x: x)(3.0)
    with pytest.raises(ValueError, match="out of range"):
        func.grad(lambda x: x.sum(), argnums=2)(rnd(2))
    with pytest.raises(TypeError, match="pair"):
        func.grad(lambda x: x.sum(), has_aux=True)(rnd(2))
    with pytest.raises(ValueError, match="repeats"):
        func.grad(lambda x, y: x.sum(), argnums=(0, 0))(rnd(2), rnd(2))


# ================================================================ vjp
def test_vjp_pytree_outputs_and_repeated_calls():
    x = rnd(3)
    out, vjp_fn = func.vjp(lambda x: {"s": x.sin(), "p": (x * x).sum()}, x)
    np.testing.assert_allclose(A(out["s"]), np.sin(A(x)))
    for k in range(2):
        v = {"s": rnd(3, seed=k), "p": T(2.0)}
        (g,) = vjp_fn(v)
        np.testing.assert_allclose(A(g), np.cos(A(x)) * A(v["s"]) + 2 * 2 * A(x), rtol=1e-12)
    out, vjp_fn, aux = func.vjp(lambda a, b: (a * b, a + 1), x, rnd(3, seed=5), has_aux=True)
    ga, gb = vjp_fn(chainrule.ones(3, dtype=f64))
    np.testing.assert_allclose(A(ga), A(rnd(3, seed=5)))
    np.testing.assert_allclose(A(gb), A(x))
    np.testing.assert_allclose(A(aux), A(x) + 1)
    assert not out.requires_grad
    with pytest.raises(ShapeError, match="shape"):
        vjp_fn(chainrule.ones(4, dtype=f64))
    with pytest.raises(ValueError, match="structure"):
        vjp_fn((chainrule.ones(3, dtype=f64),))


# ================================================================ jvp / linearize
def test_jvp_known_fd_aux_and_zero_tangents():
    x, u = rnd(4), rnd(4, seed=1)
    out, t = func.jvp(lambda x: x.exp() * x, (x,), (u,))
    np.testing.assert_allclose(A(out), np.exp(A(x)) * A(x), rtol=1e-12)
    np.testing.assert_allclose(A(t), (np.exp(A(x)) * (A(x) + 1)) * A(u), rtol=1e-12)
    eps = 1e-6
    f = lambda x: smooth(x)
    _, t = func.jvp(f, (x,), (u,))
    assert float(t) == pytest.approx((float(f(T(A(x) + eps * A(u)))) -
                                      float(f(T(A(x) - eps * A(u))))) / (2 * eps), rel=1e-7)
    (o1, _), (t1, t2), aux = func.jvp(lambda a, b: ((a * b, chainrule.ones(2)), "aux"),
                                       (x, x), (u, u), has_aux=True)
    assert aux == "aux"
    np.testing.assert_allclose(A(t1), 2 * A(x) * A(u))
    np.testing.assert_array_equal(A(t2), np.zeros(2))
    assert not hasattr(o1, "tangent") and fwad.fw_of(o1) is None


def test_jvp_errors():
    x = rnd(3)
    with pytest.raises(ValueError, match="shape"):
        func.jvp(lambda x: x, (x,), (rnd(4),))
    with pytest.raises(TypeError, match="dtype"):
        func.jvp(lambda x: x, (x,), (x.float(),))
    with pytest.raises(TypeError, match="floating-point"):
        func.jvp(lambda x: x, (chainrule.tensor([1, 2]),), (chainrule.tensor([1, 2]),))
    with pytest.raises(ValueError, match="structure"):
        func.jvp(lambda x, y: x, (x, x), (x,))
    with pytest.raises(TypeError, match="tuples"):
        func.jvp(lambda x: x, x, x)
    with pytest.raises(RuntimeError, match="boom"):
        func.jvp(lambda x: (_ for _ in ()).throw(RuntimeError("boom")), (x,), (x,))


def test_linearize_evaluates_once_and_matches_jvp():
    calls = []

    def f(x, y):
        calls.append(1)
        return {"a": (x * y).sin(), "b": x.exp().sum()}

    x, y = rnd(3), rnd(3, seed=1)
    out, jvp_fn = func.linearize(f, x, y)
    assert len(calls) == 1
    np.testing.assert_allclose(A(out["a"]), np.sin(A(x) * A(y)), rtol=1e-12)
    for k in range(3):
        u, v = rnd(3, seed=10 + k), rnd(3, seed=20 + k)
        got = jvp_fn(u, v)
        _, want = func.jvp(f, (x, y), (u, v))
        np.testing.assert_allclose(A(got["a"]), A(want["a"]), rtol=1e-12)
        np.testing.assert_allclose(A(got["b"]), A(want["b"]), rtol=1e-12)
    assert len(calls) == 4  # three jvp calls above, linearize's replays evaluated nothing
    jac = func.vmap(lambda u: jvp_fn(u, chainrule.zeros(3, dtype=f64))["a"])(
        chainrule.eye(3, dtype=f64))
    np.testing.assert_allclose(A(jac).T, A(func.jacfwd(lambda x: f(x, y)["a"])(x)), rtol=1e-12)


def test_forward_ad_api():
    x = rnd(3)
    with fwad.dual_level():
        d = fwad.make_dual(x, chainrule.ones(3, dtype=f64))
        p, t = fwad.unpack_dual((d * d).sum())
        assert fwad.unpack_dual(p).tangent is None
        assert fwad.unpack_dual(x).tangent is None
    assert float(t) == pytest.approx(2 * A(x).sum())
    with pytest.raises(RuntimeError, match="dual level"):
        fwad.make_dual(x, x)


# ================================================================ Jacobians, Hessians
def test_jacobians_known_and_fd():
    x = rnd(3)
    f = lambda x: chainrule.cat([x.sin() * x.sum(), (x ** 2)[:2]])
    J = fd_jac(f, x)
    np.testing.assert_allclose(A(func.jacrev(f)(x)), J, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(A(func.jacfwd(f)(x)), J, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(A(func.jacrev(lambda x: x ** 2)(x)), np.diag(2 * A(x)))


def test_jacobian_pytrees_argnums_aux():
    x, W = rnd(2), rnd(3, 2, seed=1)

    def f(x, p):
        y = p["W"] @ x
        return {"y": y, "n": (y * y).sum()}, "aux"

    for jac in (func.jacrev, func.jacfwd):
        J, aux = jac(f, argnums=(0, 1), has_aux=True)(x, {"W": W})
        assert aux == "aux"
        assert A(J["y"][0]).shape == (3, 2) and A(J["y"][1]["W"]).shape == (3, 3, 2)
        np.testing.assert_allclose(A(J["y"][0]), A(W), rtol=1e-12)
        want = np.einsum("ij,k->ijk", np.eye(3), A(x))
        np.testing.assert_allclose(A(J["y"][1]["W"]), want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(A(J["n"][0]), 2 * A(W).T @ (A(W) @ A(x)), rtol=1e-12)


def test_hessian_forms_agree_and_hvp():
    x = rnd(4)
    H = A(func.hessian(smooth)(x))
    for h in (func.jacrev(func.jacrev(smooth)), func.jacfwd(func.jacfwd(smooth)),
              func.jacrev(func.jacfwd(smooth))):
        np.testing.assert_allclose(A(h(x)), H, rtol=1e-10, atol=1e-12)
    fd = np.stack([fd_grad(lambda z, i=i: func.grad(smooth)(z)[i], x) for i in range(4)])
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-7)
    v = rnd(4, seed=3)
    (hv,) = func.hvp(smooth, (x,), (v,))
    np.testing.assert_allclose(A(hv), H @ A(v), rtol=1e-10)


def _mlp_loss(params, x, y):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = h.tanh()
    return chainrule.nn.functional.cross_entropy(h, y)


def test_grad_of_jacobians_and_vmap_of_hessian():
    x = rnd(3)
    H = A(func.hessian(smooth)(x))
    np.testing.assert_allclose(A(func.grad(lambda x: func.jacrev(smooth)(x).sum())(x)),
                               H.sum(0), rtol=1e-10)
    np.testing.assert_allclose(A(func.grad(lambda x: func.jacfwd(smooth)(x).sum())(x)),
                               H.sum(0), rtol=1e-10)
    X = rnd(2, 3, seed=7)
    Hs = func.vmap(func.hessian(smooth))(X)
    for i in range(2):
        np.testing.assert_allclose(A(Hs[i]), A(func.hessian(smooth)(X[i])), rtol=1e-10)


def test_hvp_of_network_loss_matches_hessian():
    rng = np.random.default_rng(0)
    sizes = [3, 4, 2]
    params = [(T(rng.standard_normal((a, b)) * 0.7), T(rng.standard_normal(b) * 0.1))
              for a, b in itertools.pairwise(sizes)]
    x = T(rng.standard_normal((5, 3)))
    y = chainrule.tensor(rng.integers(0, 2, 5))
    flat = [p for pair in params for p in pair]

    def loss(*ps):
        return _mlp_loss([(ps[i], ps[i + 1]) for i in range(0, len(ps), 2)], x, y)

    vs = [T(rng.standard_normal(p.shape)) for p in flat]
    hv = func.hvp(loss, tuple(flat), tuple(vs))
    H = func.hessian(loss, argnums=tuple(range(len(flat))))(*flat)
    for i in range(len(flat)):
        want = sum(np.tensordot(A(H[i][j]), A(vs[j]), axes=vs[j].ndim)
                   for j in range(len(flat)))
        np.testing.assert_allclose(A(hv[i]), want, rtol=1e-9, atol=1e-12)


# ================================================================ compositions
def test_vmap_of_grad_jvp_and_vjp():
    X = rnd(4, 3)
    g = func.vmap(func.grad(smooth))(X)
    for i in range(4):
        np.testing.assert_allclose(A(g[i]), A(func.grad(smooth)(X[i])), rtol=1e-12)
    U = rnd(4, 3, seed=1)
    _, t = func.vmap(lambda x, u: func.jvp(smooth, (x,), (u,)))(X, U)
    for i in range(4):
        np.testing.assert_allclose(float(t[i]), float(func.jvp(smooth, (X[i],), (U[i],))[1]))
    gg = func.vmap(func.vmap(func.grad(smooth)))(rnd(2, 3, 2))
    assert gg.shape == (2, 3, 2)


def test_grad_of_vmap_and_of_jvp():
    w = rnd(3)
    X = rnd(5, 3, seed=1)
    g = func.grad(lambda w: func.vmap(lambda x: (x * w).sin().sum())(X).sum())(w)
    want = (np.cos(A(X) * A(w)) * A(X)).sum(0)
    np.testing.assert_allclose(A(g), want, rtol=1e-12)
    # reverse-over-forward: d/dx <grad f(x), v> through the jvp rules
    v = rnd(3, seed=2)
    g2 = func.grad(lambda x: func.jvp(smooth, (x,), (v,))[1])(w)
    (hv,) = func.hvp(smooth, (w,), (v,))
    np.testing.assert_allclose(A(g2), A(hv), rtol=1e-10)


def test_no_perturbation_confusion():
    # d/dx [x * d/dy (x + y)] = 1: the inner derivative must not see the outer perturbation
    def f(x):
        return x * func.jvp(lambda y: x + y, (T(0.0),), (T(1.0),))[1]

    assert float(func.jvp(f, (T(3.0),), (T(1.0),))[1]) == 1.0
    assert float(func.grad(f)(T(3.0))) == 1.0
    g = func.grad(lambda x: x * func.grad(lambda y: x * y)(T(2.0)))(T(3.0))
    assert float(g) == 6.0  # d/dx [x * x] at 3, not 2x + something
    mixed = func.grad(func.grad(lambda x, y: x ** 2 * y ** 3, argnums=1), argnums=0)
    assert float(mixed(T(2.0), T(3.0))) == pytest.approx(6 * 2 * 9)


def test_jvp_of_jvp_and_of_vmap():
    x = T(0.7)
    second = func.jvp(lambda x: func.jvp(lambda y: y.sin() * y, (x,), (T(1.0),))[1],
                      (x,), (T(1.0),))[1]
    assert float(second) == pytest.approx(2 * np.cos(0.7) - 0.7 * np.sin(0.7))
    X, U = rnd(3, 2), rnd(3, 2, seed=1)
    out, t = func.jvp(func.vmap(lambda r: r.exp().sum()), (X,), (U,))
    np.testing.assert_allclose(A(out), np.exp(A(X)).sum(1), rtol=1e-12)
    np.testing.assert_allclose(A(t), (np.exp(A(X)) * A(U)).sum(1), rtol=1e-12)


def test_vjp_inside_grad_and_user_autograd_inside_jvp():
    x = rnd(3)
    g = func.grad(lambda x: func.vjp(lambda z: z ** 3, x)[1](chainrule.ones(3, dtype=f64))[0]
                  .sum())(x)
    np.testing.assert_allclose(A(g), 6 * A(x), rtol=1e-12)
    # forward-over-reverse through chainrule.autograd.grad(create_graph=True) directly
    v = rnd(3, seed=4)

    def gradient(z):
        return chainrule.autograd.grad(smooth(z), z, create_graph=True)[0]

    with fwad.dual_level():
        d = fwad.make_dual(x.detach().requires_grad_(), v)
        hv = fwad.unpack_dual(gradient(d)).tangent
    (want,) = func.hvp(smooth, (x,), (v,))
    np.testing.assert_allclose(A(hv), A(want), rtol=1e-10)


def test_gradcheck_forward_path():
    x = chainrule.randn(3, dtype=f64, requires_grad=True)
    w = chainrule.randn(3, 2, dtype=f64, requires_grad=True)
    assert gradcheck(lambda x, w: ((x @ w).tanh(), x.exp()), (x, w), check_forward=True)
    assert gradgradcheck(lambda x: (x.sin() * x).sum(), (x,), check_forward=True)


def test_levels_closed_after_errors():
    with pytest.raises(ZeroDivisionError):
        func.vmap(lambda x: 1 / 0)(rnd(2, 2))
    with pytest.raises(ZeroDivisionError):
        func.jvp(lambda x: 1 / 0, (rnd(2),), (rnd(2),))
    assert FORWARD.levels == 0
