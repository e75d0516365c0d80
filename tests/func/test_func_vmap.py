"""vmap: axes specs, pytrees, unbatched outputs, errors, randomness, per-example gradients
of a network (vmap(grad) against a loop), ops-layer functions under vmap."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule
import chainrule.nn.functional as NF
from chainrule import func, nn
from chainrule.func.batching import RULES, BatchingError
from chainrule.primitives import REGISTRY

f64 = chainrule.float64


def T(a):
    return chainrule.tensor(np.asarray(a, dtype=np.float64))


def A(t):
    return t.detach().numpy()


def rnd(*shape, seed=0):
    return T(np.random.default_rng(seed).standard_normal(shape))


def loop(f, *xs, axes=None):
    axes = axes or (0,) * len(xs)
    n = next(x.shape[a] for x, a in zip(xs, axes) if a is not None)
    outs = []
    for i in range(n):
        args = [x if a is None else chainrule.tensor(np.take(A(x), i, axis=a))
                for x, a in zip(xs, axes)]
        outs.append(A(f(*args)))
    return np.stack(outs)


def test_in_axes_out_axes_and_pytrees():
    X, W = rnd(3, 4), rnd(4, 2, seed=1)
    out = func.vmap(lambda x, w: x @ w, in_axes=(0, None))(X, W)
    np.testing.assert_allclose(A(out), A(X) @ A(W), rtol=1e-12)
    out = func.vmap(lambda x: x * 2, in_axes=1, out_axes=1)(X)
    np.testing.assert_allclose(A(out), 2 * A(X))
    out = func.vmap(lambda x: x.sum(), in_axes=-1)(X)
    np.testing.assert_allclose(A(out), A(X).sum(0))
    p = {"a": rnd(3, 2), "b": (rnd(2, seed=3), rnd(3, seed=4))}
    res = func.vmap(lambda p: {"s": p["a"] * p["b"][0] + p["b"][1].reshape(1)},
                    in_axes=({"a": 0, "b": (None, 0)},))(p)
    want = A(p["a"]) * A(p["b"][0]) + A(p["b"][1])[:, None]
    np.testing.assert_allclose(A(res["s"]), want)
    a, b = func.vmap(lambda x: (x.sum(), x * 2), out_axes=(0, 1))(X)
    assert a.shape == (3,) and b.shape == (4, 3)


def test_kwargs_unmapped_and_unbatched_outputs():
    X = rnd(3, 2)
    out = func.vmap(lambda x, scale=1.0: x * scale)(X, scale=3.0)
    np.testing.assert_allclose(A(out), 3 * A(X))
    c, y = func.vmap(lambda x: (chainrule.ones(2, dtype=f64), x), out_axes=(0, 0))(X)
    np.testing.assert_array_equal(A(c), np.ones((3, 2)))
    np.testing.assert_array_equal(A(y), A(X))
    c, _ = func.vmap(lambda x: (chainrule.ones(2, dtype=f64), x), out_axes=(None, 0))(X)
    assert c.shape == (2,)
    s, k = func.vmap(lambda x: (x, "label"), out_axes=(0, None))(X)
    assert k == "label" and s.shape == (3, 2)


def test_vmap_errors():
    X = rnd(3, 2)
    with pytest.raises(ValueError, match="at least one input"):
        func.vmap(lambda x: x, in_axes=None)(X)
    with pytest.raises(ValueError, match="different sizes"):
        func.vmap(lambda x, y: x + y)(X, rnd(4, 2))
    with pytest.raises(ValueError, match="out of range"):
        func.vmap(lambda x: x, in_axes=2)(X)
    with pytest.raises(ValueError, match="size 0"):
        func.vmap(lambda x: x)(chainrule.zeros(0, 2))
    with pytest.raises(TypeError, match="cannot be mapped"):
        func.vmap(lambda x, s: x * s)(X, 2.0)
    with pytest.raises(ValueError, match="out_axes cannot be None"):
        func.vmap(lambda x: x, out_axes=None)(X)
    with pytest.raises(ValueError, match="entries"):
        func.vmap(lambda x, y: x, in_axes=(0,))(X, X)
    with pytest.raises(TypeError, match="not a Tensor"):
        func.vmap(lambda x: 1.0)(X)
    with pytest.raises(ValueError, match="randomness"):
        func.vmap(lambda x: x, randomness="different")
    with pytest.raises(BatchingError, match="random"):
        func.vmap(lambda x: x + chainrule.randn(2, dtype=f64))(X)
    out = func.vmap(lambda x: x + chainrule.randn(2, dtype=f64), randomness="same")(X)
    d = A(out) - A(X)
    np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape))


def test_missing_rule_names_the_primitive():
    prim = REGISTRY["neg"]
    rule = RULES.pop("neg")
    try:
        with pytest.raises(BatchingError, match="'neg' has no batching rule"):
            func.vmap(lambda x: prim(x))(rnd(2, 2))
    finally:
        RULES["neg"] = rule


def test_nested_vmap_axes():
    X = rnd(2, 3, 4)
    out = func.vmap(func.vmap(lambda r: r.sum(), in_axes=1), in_axes=0)(X)
    np.testing.assert_allclose(A(out), A(X).sum(1))
    out = func.vmap(func.vmap(lambda a, b: a * b, in_axes=(0, None)), in_axes=(None, 0))(
        rnd(3), rnd(2, seed=1))
    np.testing.assert_allclose(A(out), np.outer(A(rnd(2, seed=1)), A(rnd(3))))


def test_ops_layer_functions_under_vmap():
    X = rnd(4, 3, 5)
    for f in (lambda x: NF.softmax(x, dim=-1), lambda x: NF.layer_norm(x, (5,)),
              lambda x: x.logsumexp(dim=1), lambda x: x.var(dim=0), lambda x: x.T @ x,
              lambda x: x[1:, ::2].flip(0), lambda x: chainrule.stack([x, x * 2], 1),
              lambda x: x.max(dim=1)[0], lambda x: x.cumsum(0).tril(),
              lambda x: x.clamp(-0.5, 0.5), lambda x: chainrule.einsum("ij,kj->ik", x, x)):
        np.testing.assert_allclose(A(func.vmap(f)(X)), loop(f, X), rtol=1e-12, atol=1e-12)
    idx = chainrule.tensor([[0, 2], [1, 1], [2, 0], [0, 0]])
    f = lambda x, i: x[i]
    np.testing.assert_allclose(A(func.vmap(f)(X, idx)), loop(f, X, idx))
    f = lambda x, i: chainrule.gather(x, 1, i.reshape(3, 1).expand(3, 5).reshape(3, 5)[:, :2])
    ii = chainrule.tensor(np.random.default_rng(0).integers(0, 5, (4, 3)))
    np.testing.assert_allclose(A(func.vmap(f)(X, ii)), loop(f, X, ii))
    f = lambda x, i: chainrule.index_select(x, 1, i)
    np.testing.assert_allclose(A(func.vmap(f)(X, ii)), loop(f, X, ii))
    emb = lambda i, w: NF.embedding(i, w)
    W = rnd(5, 2, seed=3)
    np.testing.assert_allclose(A(func.vmap(emb, in_axes=(0, None))(ii, W)),
                               loop(emb, ii, W, axes=(0, None)))


def test_conv_and_pool_under_vmap():
    from chainrule.ops import conv as C

    rng = np.random.default_rng(0)
    X = T(rng.standard_normal((3, 2, 4, 6, 6)))  # vmap over 3, each a (2, 4, 6, 6) batch
    Wb = T(rng.standard_normal((3, 5, 4, 3, 3)))
    W = Wb[0]
    f = lambda x, w: C.max_pool2d(C.conv2d(x, w, padding=1).relu(), 2)
    np.testing.assert_allclose(A(func.vmap(f, in_axes=(0, None))(X, W)),
                               loop(f, X, W, axes=(0, None)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(A(func.vmap(f)(X, Wb)), loop(f, X, Wb), rtol=1e-10, atol=1e-12)
    g = C.avg_pool2d
    np.testing.assert_allclose(A(func.vmap(lambda x: g(x, 2))(X)), loop(lambda x: g(x, 2), X),
                               rtol=1e-12)


def test_detach_inside_vmap_keeps_the_batch():
    X = rnd(3, 4)
    out = func.vmap(lambda x: x - x.detach().mean())(X)
    np.testing.assert_allclose(A(out), A(X) - A(X).mean(1, keepdims=True), atol=1e-12)


def test_per_example_gradients_of_a_module():
    chainrule.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(f64)
    params = {k: v.detach() for k, v in net.named_parameters()}
    rng = np.random.default_rng(1)
    X = T(rng.standard_normal((6, 5)))
    Y = T(np.eye(3)[rng.integers(0, 3, 6)])  # one-hot targets (class probabilities)

    def loss(p, x, y):
        logits = func.functional_call(net, p, (x.reshape(1, 5),))
        return NF.cross_entropy(logits, y.reshape(1, 3))

    per = func.vmap(func.grad(loss), in_axes=(None, 0, 0))(params, X, Y)
    for i in range(6):
        net.zero_grad()
        loss({k: v for k, v in net.named_parameters()}, X[i], Y[i]).backward()
        for k, v in net.named_parameters():
            np.testing.assert_allclose(A(per[k][i]), A(v.grad), rtol=1e-10, atol=1e-12)
    mse = lambda p, x, y: ((func.functional_call(net, p, (x,)) - y) ** 2).mean()
    per = func.vmap(func.grad(mse), in_axes=(None, 0, 0))(params, X, Y)
    (g0,) = [func.grad(mse)(params, X[0], Y[0])]
    np.testing.assert_allclose(A(per["0.weight"][0]), A(g0["0.weight"]), rtol=1e-12)


def test_jacobian_of_batched_function_matches_loop():
    X = rnd(3, 4)
    f = lambda x: (x.sin() * x.sum()).tanh()
    J = func.vmap(func.jacrev(f))(X)
    for i in range(3):
        np.testing.assert_allclose(A(J[i]), A(func.jacfwd(f)(X[i])), rtol=1e-10, atol=1e-13)


def test_gather_and_scatter_add_take_batched_index_tensors_as_inputs():
    """The index of gather / scatter_add is an input: a batched index tensor is batched like
    any other input (no lookup of raw arrays in params)."""
    r = np.random.default_rng(3)
    x = chainrule.tensor(r.standard_normal((4, 3, 5)))
    idx = chainrule.tensor(r.integers(0, 5, (4, 3, 2)))
    got = func.vmap(lambda a, i: REGISTRY["gather"](a, i, axis=1))(x, idx)
    want = np.stack([np.take_along_axis(x.numpy()[b], idx.numpy()[b], axis=1) for b in range(4)])
    np.testing.assert_array_equal(got.numpy(), want)
    src = chainrule.tensor(r.standard_normal((4, 3, 2)))
    got = func.vmap(lambda s, i: REGISTRY["scatter_add"](s, i, shape=(3, 5), axis=1))(src, idx)
    for b in range(4):
        ref = np.zeros((3, 5))
        np.add.at(ref, (np.arange(3)[:, None], idx.numpy()[b]), src.numpy()[b])
        np.testing.assert_allclose(got.numpy()[b], ref, rtol=1e-12)
