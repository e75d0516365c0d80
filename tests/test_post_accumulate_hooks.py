"""Tensor.register_post_accumulate_grad_hook: when it runs, what it sees, and that hooked
leaves are delivered during backward (as soon as their last contribution is in)."""

import gc

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import post_hooks


def test_runs_after_accumulation_with_summed_grad():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.tolist()))
    # w is used twice: the hook runs once, with both contributions summed
    (w * 2 + w * w).sum().backward()
    assert seen == [[4.0, 6.0]]
    (w * 1).sum().backward()  # accumulates into the existing grad
    assert seen[-1] == [5.0, 7.0]


def test_matches_torch_order_of_delivery():
    # the hook of a leaf used early in the forward fires after the leaves used late
    a = cr.tensor(1.0, requires_grad=True)
    b = cr.tensor(2.0, requires_grad=True)
    order = []
    a.register_post_accumulate_grad_hook(lambda p: order.append("a"))
    b.register_post_accumulate_grad_hook(lambda p: order.append("b"))
    h = (a * 3).exp()
    (h * b).backward()
    assert order == ["b", "a"]


def test_delivered_during_backward():
    # the hook of the last layer's weight runs before the first layer's vjp is computed
    w1 = cr.randn(3, 3, requires_grad=True)
    w2 = cr.randn(3, 3, requires_grad=True)
    x = cr.randn(4, 3)
    events = []
    w2.register_post_accumulate_grad_hook(lambda p: events.append("w2"))
    h1 = x @ w1
    h1.register_hook(lambda g: events.append("h1 grad") or None)
    ((h1 @ w2).sum()).backward()
    assert events.index("w2") < events.index("h1 grad")


def test_not_run_by_autograd_grad_and_remove():
    w = cr.tensor([1.0], requires_grad=True)
    seen = []
    h = w.register_post_accumulate_grad_hook(lambda p: seen.append(1))
    cr.autograd.grad((w * 2).sum(), w)
    assert seen == []
    h.remove()
    (w * 2).sum().backward()
    assert seen == []
    np.testing.assert_array_equal(w.grad.numpy(), [2.0])


def test_create_graph_and_registry_freed():
    w = cr.tensor([3.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.requires_grad))
    (w ** 3).sum().backward(create_graph=True)
    assert seen == [True]
    key = id(w)
    del w
    gc.collect()
    assert key not in post_hooks.HOOKS


def test_bad_input():
    x = cr.ones(2, requires_grad=True)
    with pytest.raises(cr.GraphError, match="produced by an op"):
        (x * 2).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(cr.GraphError, match="does not require grad"):
        cr.ones(2).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(TypeError, match="callable"):
        x.register_post_accumulate_grad_hook(3)


def test_against_torch():
    torch = pytest.importorskip("torch", reason="torch is the oracle for hook order")
    order_t, order_c = [], []
    ws_t = [torch.randn(3, 3, requires_grad=True) for _ in range(3)]
    ws_c = [cr.tensor(w.detach().numpy(), requires_grad=True) for w in ws_t]
    for i, (wt, wc) in enumerate(zip(ws_t, ws_c)):
        wt.register_post_accumulate_grad_hook(lambda p, i=i: order_t.append(i))
        wc.register_post_accumulate_grad_hook(lambda p, i=i: order_c.append(i))
    xt, xc = torch.ones(2, 3), cr.ones(2, 3)
    for wt, wc in zip(ws_t, ws_c):
        xt, xc = (xt @ wt).tanh(), (xc @ wc).tanh()
    xt.sum().backward()
    xc.sum().backward()
    assert order_c == order_t
