"""The reverse-mode engine, with PyTorch's semantics: backward / autograd.grad, accumulation,
retain_grad, hooks, retain_graph, create_graph, grad modes, long chains, version counters."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import chainrule
from chainrule import GraphError
from chainrule.autograd import grad


def _leaf(values, dtype=chainrule.float64):
    return chainrule.tensor(values, dtype=dtype, requires_grad=True)


# ================================================================ backward and .grad
def test_backward_accumulates_into_grad_across_calls():
    x = _leaf([1.0, 2.0])
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_grad_has_the_leaf_dtype_and_shape():
    x = chainrule.ones(2, 3, requires_grad=True)  # float32
    (x.double() * chainrule.ones(3, dtype=chainrule.float64)).sum().backward()
    assert x.grad.dtype is chainrule.float32 and x.grad.shape == (2, 3)
    b = chainrule.ones(3, requires_grad=True)
    (chainrule.ones(4, 2, 3) * b).sum().backward()  # broadcast: summed back
    assert b.grad.tolist() == [8.0, 8.0, 8.0]


def test_reused_tensor_and_diamond_graph_accumulate():
    x = _leaf(3.0)
    y = x * x
    z = y + y * x + y.exp() * 0  # y used three times
    z.backward()
    # d/dx (x^2 + x^3) = 2x + 3x^2
    assert x.grad.item() == pytest.approx(2 * 3 + 3 * 9)


def test_backward_with_gradient_argument():
    x = _leaf([1.0, 2.0, 3.0])
    y = x * 2
    y.backward(chainrule.tensor([1.0, 0.5, 0.0], dtype=chainrule.float64))
    assert x.grad.tolist() == [2.0, 1.0, 0.0]


def test_backward_of_a_leaf():
    x = _leaf([1.0, 2.0])
    x.backward(chainrule.tensor([3.0, 4.0], dtype=chainrule.float64))
    assert x.grad.tolist() == [3.0, 4.0]


def test_grad_of_non_leaf_is_not_kept_without_retain_grad():
    x = _leaf([1.0, 2.0])
    y = x * 2
    y.retain_grad()
    z = y * y
    w = z.sum()
    w.backward()
    assert y.retains_grad and y.grad.tolist() == [4.0, 8.0]
    assert z.grad is None and not z.retains_grad
    assert x.grad.tolist() == [8.0, 16.0]


def test_retain_grad_accumulates_and_leaf_retain_grad_is_a_no_op():
    x = _leaf([1.0])
    y = x * 3
    y.retain_grad()
    x.retain_grad()
    (y * 2).sum().backward(retain_graph=True)
    (y * 2).sum().backward()
    assert y.grad.tolist() == [4.0] and x.grad.tolist() == [12.0]


def test_backward_inputs_restricts_accumulation():
    a, b = _leaf([1.0]), _leaf([2.0])
    (a * b).sum().backward(inputs=[a])
    assert a.grad.tolist() == [2.0] and b.grad is None
    (a * b).sum().backward(inputs=b)
    assert a.grad.tolist() == [2.0] and b.grad.tolist() == [1.0]


def test_backward_inputs_may_name_a_non_leaf():
    x = _leaf([1.0, 2.0])
    y = x * 3
    (y * y).sum().backward(inputs=[y])
    assert y.grad.tolist() == [6.0, 12.0] and x.grad is None


# ================================================================ autograd.grad
def test_grad_returns_and_does_not_accumulate():
    x = _leaf([1.0, 2.0])
    y = _leaf([3.0, 4.0])
    out = (x * y).sum()
    gx, gy = grad(out, [x, y])
    assert gx.tolist() == [3.0, 4.0] and gy.tolist() == [1.0, 2.0]
    assert x.grad is None and y.grad is None
    assert not gx.requires_grad


def test_grad_with_respect_to_an_intermediate():
    x = _leaf([1.0, 2.0])
    h = x * x
    (g,) = grad((h * 5).sum(), h)
    assert g.tolist() == [5.0, 5.0]


def test_grad_outputs_and_several_outputs():
    x = _leaf([1.0, 2.0])
    a, b = x * 2, x * x
    (g,) = grad([a, b], x, grad_outputs=[chainrule.ones(2, dtype=chainrule.float64),
                                         chainrule.tensor([1.0, 0.0], dtype=chainrule.float64)])
    assert g.tolist() == [4.0, 2.0]


def test_grad_allow_unused_and_unused_error():
    x, y = _leaf([1.0]), _leaf([2.0])
    out = (x * 2).sum()
    with pytest.raises(GraphError, match=r"not used|allow_unused"):
        grad(out, [x, y], retain_graph=True)
    gx, gy = grad(out, [x, y], allow_unused=True)
    assert gx.tolist() == [2.0] and gy is None


def test_grad_of_a_leaf_output_with_respect_to_itself():
    x = _leaf(2.0)
    (g,) = grad(x, x)
    assert g.item() == 1.0


# ================================================================ hooks
def test_hooks_on_leaves_and_non_leaves():
    x = _leaf([1.0, 2.0])
    seen = []
    hx = x.register_hook(lambda g: seen.append(("x", g.tolist())))
    y = x * 2
    y.register_hook(lambda g: g * 10)  # replaces y's gradient
    y.sum().backward()
    assert x.grad.tolist() == [20.0, 20.0]
    assert seen == [("x", [20.0, 20.0])]
    hx.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert seen == [("x", [20.0, 20.0])] and x.grad.tolist() == [1.0, 1.0]


def test_leaf_hook_runs_once_on_the_summed_gradient():
    # PyTorch runs a leaf's hooks once per backward, on the total gradient, so a non-linear
    # hook (clipping) sees the sum of the contributions of every use of the leaf
    x = _leaf([1.0, 2.0])
    calls = []

    def clip(g):
        calls.append(g.tolist())
        return g.clamp(max=3.0)

    x.register_hook(clip)
    (x * 2 + x * 3).sum().backward()
    assert calls == [[5.0, 5.0]]
    assert x.grad.tolist() == [3.0, 3.0]


def test_hook_on_a_tensor_that_does_not_require_grad_is_refused():
    with pytest.raises(RuntimeError, match="require"):
        chainrule.ones(2).register_hook(lambda g: g)


def test_hooks_run_with_autograd_grad_too():
    x = _leaf([1.0])
    x.register_hook(lambda g: g * 3)
    (g,) = grad((x * 2).sum(), x)
    assert g.tolist() == [6.0]


# ================================================================ retain_graph and freed buffers
def test_second_backward_through_freed_buffers_raises_clearly():
    x = _leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(GraphError, match=r"second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = _leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.tolist()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array(first))


def test_grad_frees_the_graph_unless_retained():
    x = _leaf([1.0])
    y = (x * x).sum()
    grad(y, x)
    with pytest.raises(GraphError, match="retain_graph"):
        grad(y, x)


def test_graph_without_saved_tensors_can_backward_twice():
    # PyTorch only complains when freed saved tensors are needed; add/neg save nothing
    x = _leaf([1.0])
    y = (x + 1).sum()
    y.backward()
    y.backward()
    assert x.grad.tolist() == [2.0]


# ================================================================ create_graph
def test_create_graph_gives_differentiable_gradients():
    x = _leaf([1.0, 2.0])
    y = (x ** 3).sum()
    (g,) = grad(y, x, create_graph=True)
    assert g.requires_grad and g.tolist() == [3.0, 12.0]
    (h,) = grad(g.sum(), x)
    assert h.tolist() == [6.0, 12.0]


def test_third_order():
    x = _leaf(2.0)
    (g1,) = grad(x ** 4, x, create_graph=True)
    (g2,) = grad(g1, x, create_graph=True)
    (g3,) = grad(g2, x)
    assert (g1.item(), g2.item(), g3.item()) == (32.0, 48.0, 48.0)


def test_backward_create_graph_then_backward_of_grad():
    x = _leaf([1.0, 3.0])
    (x.sin() * x).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    x.grad = None
    g.sum().backward()
    xs = np.array([1.0, 3.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(xs) - xs * np.sin(xs))


def test_mixed_partials():
    x, y = _leaf(2.0), _leaf(3.0)
    (gx,) = grad(x * x * y, x, create_graph=True)
    (gxy,) = grad(gx, y)
    assert gxy.item() == 4.0


# ================================================================ grad modes
def test_no_grad_records_nothing():
    x = _leaf([1.0])
    with chainrule.no_grad():
        y = x * 2
        z = y.exp()
        assert not chainrule.is_grad_enabled()
    assert chainrule.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and z.grad_fn is None
    with pytest.raises(GraphError):
        z.sum().backward()


def test_enable_grad_inside_no_grad():
    x = _leaf([1.0])
    with chainrule.no_grad():
        with chainrule.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_grad_modes_as_decorators():
    @chainrule.no_grad()
    def f(t):
        return t * 2

    @chainrule.enable_grad()
    def g(t):
        return t * 2

    x = _leaf([1.0])
    assert not f(x).requires_grad
    with chainrule.no_grad():
        assert g(x).requires_grad
    assert chainrule.is_grad_enabled()


def test_set_grad_enabled_as_function_and_context():
    x = _leaf([1.0])
    with chainrule.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert chainrule.is_grad_enabled()
    chainrule.set_grad_enabled(False)
    try:
        assert not chainrule.is_grad_enabled() and not (x * 2).requires_grad
    finally:
        chainrule.set_grad_enabled(True)
    with chainrule.set_grad_enabled(True):
        assert (x * 2).requires_grad


def test_grad_mode_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with chainrule.no_grad():
            1 / 0
    assert chainrule.is_grad_enabled()


def test_ops_without_grad_inputs_record_nothing():
    y = chainrule.ones(3) * 2
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf


# ================================================================ long chains
def test_chain_of_100000_ops_without_recursion():
    x = chainrule.tensor([1.0], dtype=chainrule.float64, requires_grad=True)
    y = x
    for _ in range(50_000):
        y = y * 1.0
        y = y + 0.0
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 100)  # the engine must not recurse
    try:
        y.sum().backward()
    finally:
        sys.setrecursionlimit(limit)
    assert x.grad.tolist() == [1.0]
    del y  # a long chain must also be freed without deep recursion


def test_wide_graph_accumulates_once_per_use():
    x = _leaf([1.0])
    total = x * 0
    for k in range(1, 501):
        total = total + x * k
    total.sum().backward()
    assert x.grad.item() == sum(range(1, 501))


# ================================================================ version counters
def test_changing_a_saved_tensor_in_place_raises_at_backward():
    w = chainrule.tensor([1.0, 2.0], dtype=chainrule.float64)
    x = _leaf([3.0, 4.0])
    y = (x * w).sum()  # MulBackward saved w at version 0
    w.add_(1.0)
    with pytest.raises(GraphError) as info:
        y.backward()
    msg = str(info.value)
    for part in ("MulBackward", r"(2,)", "version 0", "version 1", "in-place"):
        assert part in msg, f"{part!r} not in {msg!r}"


def test_changing_a_saved_output_in_place_raises_at_backward():
    x = _leaf([1.0, 2.0])
    y = x.exp()  # ExpBackward saves its output
    with chainrule.no_grad():
        y.mul_(2.0)
    with pytest.raises(GraphError, match="ExpBackward"):
        y.sum().backward()


def test_changing_a_saved_tensor_through_a_view_raises():
    w = chainrule.tensor([1.0, 2.0, 3.0], dtype=chainrule.float64)
    x = _leaf([1.0, 1.0, 1.0])
    y = (x * w).sum()
    w[0:2].mul_(3.0)  # a view shares the version counter of its base
    with pytest.raises(GraphError, match="MulBackward"):
        y.backward()


def test_unrelated_inplace_changes_do_not_raise():
    w = chainrule.tensor([1.0, 2.0], dtype=chainrule.float64)
    x = _leaf([3.0, 4.0])
    y = (x + w).sum()  # add saves nothing
    w.add_(1.0)
    y.backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_inplace_on_a_leaf_that_requires_grad_raises_at_once():
    x = _leaf([1.0, 2.0])
    for f in (lambda t: t.add_(1.0), lambda t: t.mul_(2.0), lambda t: t.zero_(),
              lambda t: t.fill_(1.0), lambda t: t.copy_(chainrule.zeros(2)),
              lambda t: t.clamp_(0.0, 1.0), lambda t: t.__iadd__(1.0)):
        with pytest.raises(GraphError, match="leaf"):
            f(x)
    with pytest.raises(GraphError, match="leaf"):
        x[0] = 5.0
    assert x.tolist() == [1.0, 2.0] and x._version == 0
    with chainrule.no_grad():
        x.add_(1.0)  # allowed outside grad mode, as in PyTorch (an optimizer step)
        x[0] = 0.0
    assert x.tolist() == [0.0, 3.0] and x.requires_grad and x.is_leaf


def test_version_counter_increments():
    x = chainrule.zeros(3)
    assert x._version == 0
    x.add_(1)
    x[0] = 2.0
    x.zero_()
    assert x._version == 3
