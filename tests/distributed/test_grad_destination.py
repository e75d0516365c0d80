"""Gradient destinations (``autograd.post_hooks.DESTS`` / ``INTO``), what DistributedDataParallel
uses with 2 ranks on one node to have backward write linear layers' weight gradients straight
into its shared-memory buckets: the gradient written there has the bits of the ordinary
backward, and every case where it would be wrong to keep it there takes the ordinary path (no
MPI needed)."""

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.autograd import post_hooks
from chainrule.nn.parallel import distributed as ddp  # registers linear's weight rule


def _net():
    cr.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))


def _x():
    return cr.tensor(np.random.default_rng(0).standard_normal((4, 2, 7)).astype(np.float32))


class _Dests:
    """Destinations for the given leaves, one array per leaf handed out again on every call
    (as DDP's slot), with a scale, remembered, dropped at exit."""

    def __init__(self, leaves, scale=1.0):
        self.leaves, self.given, self.scale = leaves, {}, scale

    def __enter__(self):
        def dest(leaf):
            d = self.given.get(id(leaf))
            if d is None:
                d = self.given[id(leaf)] = np.empty(leaf.shape, dtype=leaf._data.dtype)
            d[...] = np.nan
            return d, self.scale

        for p in self.leaves:
            post_hooks.register_destination(p, dest)
        return self

    def __exit__(self, *exc):
        for p in self.leaves:
            post_hooks.DESTS.pop(id(p), None)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 2.0 ** -7])
def test_weight_gradient_is_written_into_the_destination_with_the_same_bits(scale):
    assert post_hooks.INTO["linear"][1] is ddp._linear_weight_into
    ref, net = _net(), _net()
    ref(_x()).square().sum().backward()
    with _Dests(list(net.parameters()), scale) as d:
        net(_x()).square().sum().backward()
    w0, b0, w1, b1 = net.parameters()
    for p, q in zip(ref.parameters(), net.parameters()):
        # the weights' scaled by backward, the biases' as they are (no rule)
        s = np.float32(scale if q is w0 or q is w1 else 1.0)
        np.testing.assert_array_equal(q.grad.numpy(), p.grad.numpy() * s)
    # the weights' gradients are the destinations themselves; the biases have no rule
    assert w0.grad._data is d.given[id(w0)] and w1.grad._data is d.given[id(w1)]
    assert id(b0) not in d.given and id(b1) not in d.given


def test_cases_that_must_not_keep_the_destination_take_the_ordinary_path():
    ref, net = _net(), _net()
    ws = [ref[0].weight, net[0].weight]
    with _Dests([net[0].weight]) as d:
        # a weight used twice: two contributions, summed into a new array
        for m in (ref, net):
            (m(_x()).square().sum() + m[0](_x()).sum()).backward()
        np.testing.assert_array_equal(ws[1].grad.numpy(), ws[0].grad.numpy())
        assert ws[1].grad._data is not d.given.get(id(ws[1]))
        # a .grad already there: accumulated into it
        for m in (ref, net):
            m(_x()).sum().backward()
        np.testing.assert_array_equal(ws[1].grad.numpy(), ws[0].grad.numpy())
        # autograd.grad (nothing accumulated) and create_graph never use a destination
        d.given.clear()
        for m in (ref, net):
            m.zero_grad()
        (g_ref,) = cr.autograd.grad(ref(_x()).sum(), [ws[0]])
        (g_net,) = cr.autograd.grad(net(_x()).sum(), [ws[1]])
        np.testing.assert_array_equal(g_net.numpy(), g_ref.numpy())
        net(_x()).square().sum().backward(create_graph=True)
        assert not d.given
        # a tensor hook on the leaf: its result, not the destination, becomes .grad
        net.zero_grad()
        ws[1].register_hook(lambda g: g * 2)
        net(_x()).sum().backward()
        ref.zero_grad()
        ref(_x()).sum().backward()
        np.testing.assert_array_equal(ws[1].grad.numpy(), 2 * ws[0].grad.numpy())
        assert ws[1].grad._data is not d.given[id(ws[1])]


def test_a_declined_destination_leaves_backward_as_it_was():
    ref, net = _net(), _net()
    post_hooks.register_destination(net[0].weight, lambda leaf: None)
    try:
        ref(_x()).sum().backward()
        net(_x()).sum().backward()
    finally:
        post_hooks.DESTS.pop(id(net[0].weight), None)
    np.testing.assert_array_equal(net[0].weight.grad.numpy(), ref[0].weight.grad.numpy())
    # another dtype: the rule declines, the ordinary rule runs
    w = cr.ones(3, 2, dtype=cr.float64, requires_grad=True)
    post_hooks.register_destination(w, lambda leaf: (np.zeros((3, 2), np.float32), 1.0))
    try:
        nn.functional.linear(cr.ones(4, 2, dtype=cr.float64), w).sum().backward()
    finally:
        post_hooks.DESTS.pop(id(w), None)
    assert w.grad.dtype == cr.float64
    np.testing.assert_array_equal(w.grad.numpy(), np.full((3, 2), 4.0))
