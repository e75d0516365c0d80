"""functional_call with chainrule.nn modules (and a duck-typed module) and pytrees."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import chainrule
from chainrule import func, nn
from chainrule.func.pytree import (
    flatten_up_to,
    tree_flatten,
    tree_leaves,
    tree_map,
    tree_structure,
    tree_unflatten,
)

f64 = chainrule.float64


def A(t):
    return t.detach().numpy()


class Affine(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("shift", chainrule.zeros(2))

    def forward(self, x, scale=1.0):
        return self.lin(x) * scale + self.shift


def test_swaps_parameters_and_buffers_and_restores():
    m = Affine()
    old = {k: v for k, v in m.named_parameters()}
    new = {"lin.weight": chainrule.ones(2, 3), "lin.bias": chainrule.zeros(2),
           "shift": chainrule.full((2,), 5.0)}
    out = func.functional_call(m, new, (chainrule.ones(1, 3),), {"scale": 2.0})
    np.testing.assert_allclose(A(out), [[11.0, 11.0]])
    assert m.lin.weight is old["lin.weight"] and m.lin._parameters["weight"] is old["lin.weight"]
    assert not m.shift.numpy().any()
    out = func.functional_call(m, ({"lin.weight": chainrule.zeros(2, 3)}, {"shift": new["shift"]}),
                               chainrule.ones(1, 3))
    np.testing.assert_allclose(A(out), A(m.lin.bias)[None] + 5.0, rtol=1e-6)


def test_restores_after_an_error_and_checks_keys():
    m = Affine()
    w = m.lin.weight
    with pytest.raises(Exception):  # noqa: B017 - any error from the forward
        func.functional_call(m, {"lin.weight": chainrule.ones(5, 5)}, (chainrule.ones(1, 3),))
    assert m.lin.weight is w
    with pytest.raises(ValueError, match="unexpected key"):
        func.functional_call(m, {"lin.wieght": chainrule.ones(2, 3)}, (chainrule.ones(1, 3),))
    with pytest.raises(ValueError, match="missing key"):
        func.functional_call(m, {"lin.weight": chainrule.ones(2, 3)}, (chainrule.ones(1, 3),),
                             strict=True)
    with pytest.raises(ValueError, match="more than one"):
        func.functional_call(m, ({"shift": w}, {"shift": w}), (chainrule.ones(1, 3),))


def test_tied_weights():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2, bias=False)
            self.b = nn.Linear(2, 2, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    m = Tied()
    out = func.functional_call(m, {"a.weight": chainrule.eye(2) * 2}, (chainrule.ones(1, 2),))
    np.testing.assert_allclose(A(out), [[4.0, 4.0]])


def test_grad_and_hessian_of_a_network_loss():
    chainrule.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(f64)
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = chainrule.randn(5, 3, dtype=f64)
    loss = lambda p: (func.functional_call(net, p, (x,)) ** 2).mean()
    g = func.grad(loss)(params)
    net.zero_grad()
    loss(dict(net.named_parameters())).backward()
    for k, v in net.named_parameters():
        np.testing.assert_allclose(A(g[k]), A(v.grad), rtol=1e-12)
    H = func.hessian(loss)(params)
    v = {k: chainrule.randn(*p.shape, dtype=f64) for k, p in params.items()}
    names = list(params)
    hv = func.hvp(lambda *ps: loss(dict(zip(names, ps))), tuple(params.values()),
                  tuple(v.values()))
    for i, k in enumerate(names):
        want = sum(np.tensordot(A(H[k][j]), A(v[j]), axes=v[j].ndim) for j in names)
        np.testing.assert_allclose(A(hv[i]), want, rtol=1e-9, atol=1e-12)


def test_duck_typed_module():
    class Tiny:
        def __init__(self):
            self._parameters = {"w": chainrule.ones(2)}
            self._buffers = {}
            self._modules = {}

        def __call__(self, x):
            return x * self._parameters["w"]

    t = Tiny()
    out = func.functional_call(t, {"w": chainrule.tensor([2.0, 3.0])}, (chainrule.ones(2),))
    np.testing.assert_allclose(A(out), [2.0, 3.0])
    assert float(t._parameters["w"].sum()) == 2.0
    with pytest.raises(TypeError, match="registry"):
        func.functional_call(object(), {}, ())


# ---------------------------------------------------------------- pytrees
def test_pytree_roundtrip_and_map():
    Point = namedtuple("Point", "x y")
    tree = {"a": [1, (2, None)], "b": Point(3, {"c": 4})}
    leaves, spec = tree_flatten(tree)
    assert leaves == [1, 2, 3, 4]
    assert tree_unflatten(spec, [10, 20, 30, 40]) == {"a": [10, (20, None)],
                                                       "b": Point(30, {"c": 40})}
    assert tree_map(lambda a, b: a + b, tree, tree)["b"].y["c"] == 8
    assert tree_leaves(None) == [] and tree_structure(5).num_leaves == 1
    assert tree_structure({"a": 1, "b": 2}) == tree_structure({"b": 0, "a": 0})
    assert flatten_up_to(tree_structure((0, 0)), ([1, 2], {"k": 3})) == [[1, 2], {"k": 3}]
    with pytest.raises(ValueError, match="leaves"):
        tree_unflatten(spec, [1])
    with pytest.raises(ValueError, match="structure"):
        tree_map(lambda a, b: a, (1, 2), (1, [2]))
    with pytest.raises(ValueError, match="keys"):
        flatten_up_to(tree_structure({"a": 0}), {"b": 1})
