"""Every misuse a user can make gets a typed error whose message names the problem (the op,
the shapes, the dtypes), and a failed op leaves its operands as they were."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule
from chainrule import DeviceError, GraphError, ShapeError
from chainrule.autograd import grad
from chainrule.backend import cuda_available


def raises(exc, *patterns):
    """pytest.raises that also checks the message for every regex in ``patterns``."""
    class _Check:
        def __enter__(self):
            self._ctx = pytest.raises(exc)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *a):
            r = self._ctx.__exit__(*a)
            msg = str(self.info.value)
            for p in patterns:
                assert re.search(p, msg), f"message {msg!r} lacks {p!r}"
            return r

    return _Check()


def _leaf(*shape):
    return chainrule.ones(*shape, dtype=chainrule.float64, requires_grad=True)


# ================================================================ autograd misuse
def test_backward_of_a_non_scalar_needs_a_gradient():
    x = _leaf(2, 3)
    y = x * 2
    with raises(GraphError, "scalar", r"\(2, 3\)"):
        y.backward()
    assert x.grad is None
    y.sum().backward()  # the graph is still usable
    assert x.grad.tolist() == [[2.0] * 3] * 2


def test_gradient_of_the_wrong_shape():
    x = _leaf(3)
    y = x * 2
    with raises(ShapeError, r"\(2,\)", r"\(3,\)"):
        y.backward(chainrule.ones(2, dtype=chainrule.float64))
    with raises(ShapeError, r"\(3, 1\)", r"\(3,\)"):
        grad(y, x, grad_outputs=chainrule.ones(3, 1, dtype=chainrule.float64))
    assert x.grad is None


def test_grad_with_respect_to_a_tensor_that_does_not_require_grad():
    x = _leaf(2)
    c = chainrule.ones(2, dtype=chainrule.float64)
    with raises(GraphError, "does not require grad", r"\(2,\)"):
        grad((x * c).sum(), c)
    with raises(GraphError, "does not require grad"):
        grad((x * c).sum(), [x, c])


def test_backward_of_something_that_does_not_require_grad():
    with raises(GraphError, "does not require grad"):
        chainrule.ones(2).sum().backward()


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool_"])
def test_requires_grad_on_an_integer_tensor(dtype):
    d = getattr(chainrule, dtype)
    with raises(TypeError, "floating", d.name):
        chainrule.tensor([1, 2], dtype=d, requires_grad=True)
    with raises(TypeError, "floating", d.name):
        chainrule.zeros(2, dtype=d).requires_grad = True
    with raises(TypeError, "floating"):
        chainrule.arange(3, requires_grad=True)


def test_requires_grad_false_on_a_non_leaf():
    y = _leaf(2) * 2
    with raises(RuntimeError, "non-leaf", "detach"):
        y.requires_grad_(False)


def test_grad_assignment_is_checked():
    x = _leaf(2)
    with raises(ShapeError, r"\(3,\)", r"\(2,\)"):
        x.grad = chainrule.zeros(3, dtype=chainrule.float64)
    with raises(TypeError, "float32", "float64"):
        x.grad = chainrule.zeros(2)
    assert x.grad is None


# ================================================================ shapes
@pytest.mark.parametrize("op,name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"), (lambda a, b: a - b, "sub"),
    (lambda a, b: a / b, "div"), (chainrule.maximum, "maximum"), (lambda a, b: a < b, "lt"),
    (lambda a, b: chainrule.where(a > 0, a, b), "where"),
])
def test_broadcasting_mismatch(op, name):
    a, b = chainrule.ones(2, 3), chainrule.ones(4)
    with raises(ShapeError, name, r"\(?2, ?3\)?", r"\(4,?\)"):
        op(a, b)


def test_broadcast_to_and_expand_mismatch():
    with raises(ShapeError, "broadcast_to", r"\(2, 3\)", r"\(4, 3\)"):
        chainrule.ones(2, 3).broadcast_to((4, 3))
    with raises(ShapeError, "expand"):
        chainrule.ones(2, 3).expand(3)


@pytest.mark.parametrize("sa,sb", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)),
                                   ((2, 2, 3), (3, 3, 4))])
def test_matmul_mismatch(sa, sb):
    a, b = chainrule.ones(*sa), chainrule.ones(*sb)
    with raises(ShapeError, "matmul", re.escape(str(sa)), re.escape(str(sb))):
        a @ b
    with raises(ShapeError, "matmul"):
        chainrule.matmul(a, b)


def test_matmul_of_a_0d_tensor():
    with raises(ShapeError, "matmul", "1 dim"):
        chainrule.tensor(2.0) @ chainrule.ones(2)


def test_cat_and_stack_mismatch():
    with raises(ShapeError, "cat", r"\(2, 3\)", r"\(2, 4\)"):
        chainrule.cat([chainrule.ones(2, 3), chainrule.ones(2, 4)], dim=0)
    with raises(ShapeError, "cat"):
        chainrule.cat([chainrule.ones(2, 3), chainrule.ones(2, 3, 1)])
    with raises(ShapeError, "cat", "zero-dim"):
        chainrule.cat([chainrule.tensor(1.0), chainrule.tensor(2.0)])
    with raises(ValueError, "cat"):
        chainrule.cat([])
    with raises(ShapeError, "stack", r"\(2, 3\)", r"\(3, 2\)"):
        chainrule.stack([chainrule.ones(2, 3), chainrule.ones(3, 2)])


def test_reshape_mismatch():
    x = chainrule.ones(2, 3)
    with raises(ShapeError, "reshape", r"\[4, 2\]", "6"):
        x.reshape(4, 2)
    with raises(ShapeError, "view|reshape", r"\[5\]", "6"):
        x.view(5)
    with raises(ShapeError, "reshape", "-1"):
        x.reshape(-1, -1)
    with raises(ShapeError, "reshape", "-1"):
        x.reshape(4, -1)


@pytest.mark.parametrize("index,patterns", [
    (5, ["5", "size 2"]), ((0, 7), ["7", "size 3"]), ((0, 0, 0), ["too many|dimension"]),
    (chainrule.tensor([0, 3]), ["3"]),
])
def test_bad_index(index, patterns):
    x = chainrule.ones(2, 3)
    with raises(IndexError, *patterns):
        x[index]


def test_bad_index_types():
    x = chainrule.ones(2, 3)
    with raises(IndexError, "float"):
        x[1.5]
    with raises(IndexError, "float32|long, int or bool"):
        x[chainrule.tensor([0.0, 1.0])]


@pytest.mark.parametrize("mask_shape,index", [((3,), lambda m: m), ((2,), lambda m: (0, m)),
                                              ((2, 2), lambda m: m)])
def test_bool_mask_of_the_wrong_shape(mask_shape, index):
    # PyTorch: "The shape of the mask [3] at index 0 does not match the shape of the indexed
    # tensor [2, 3] at index 0"; a mask must never be silently truncated or reused
    x = chainrule.ones(2, 3)
    mask = chainrule.ones(*mask_shape, dtype=chainrule.bool_)
    with raises(IndexError, "mask", r"\(2, 3\)|\[2, 3\]"):
        x[index(mask)]


def test_setitem_shape_mismatch():
    x = chainrule.zeros(2, 3)
    with raises(ShapeError, "setitem", r"\(4,\)", r"\(3,\)"):
        x[0] = chainrule.ones(4)


@pytest.mark.parametrize("call,name", [
    (lambda x: x.sum(dim=2), "sum"), (lambda x: x.mean(dim=-3), "mean"),
    (lambda x: x.softmax(dim=2), "softmax"), (lambda x: x.transpose(0, 2), "transpose"),
    (lambda x: x.squeeze(2), "squeeze"),
    (lambda x: x.argmax(dim=5), "argmax"), (lambda x: x.cumsum(dim=2), "cumsum"),
    (lambda x: x.flatten(0, 3), "flatten"), (lambda x: chainrule.cat([x, x], dim=2), "cat"),
    (lambda x: x.max(dim=2), "max"), (lambda x: x.size(2), "size"),
    (lambda x: x.gather(2, chainrule.zeros(2, 3, dtype=chainrule.int64)), "gather"),
    (lambda x: x.var(dim=2), "var"), (lambda x: x.logsumexp(dim=-3), "logsumexp"),
    (lambda x: x.flip(2), "flip"), (lambda x: x.permute(0, 2), "permute"),
])
def test_dim_out_of_range(call, name):
    x = chainrule.ones(2, 3)
    with raises(IndexError, name, "out of range", r"\[-2, 1\]"):
        call(x)


def test_dim_out_of_range_for_ops_that_add_a_dim():
    x = chainrule.ones(2, 3)
    with raises(IndexError, "unsqueeze", "out of range", r"\[-3, 2\]", "4"):
        x.unsqueeze(4)
    with raises(IndexError, "stack", "out of range", r"\[-3, 2\]"):
        chainrule.stack([x, x], dim=-4)


def test_scalar_conversions_of_multi_element_tensors():
    with raises(ValueError, "2 elements|ambiguous"):
        bool(chainrule.ones(2))
    with raises(ValueError, "item", "2 elements"):
        chainrule.ones(2).item()


# ================================================================ devices
def test_device_strings_are_checked():
    with raises(ValueError, "tpu"):
        chainrule.device("tpu")
    with raises(ValueError, "cuda:x"):
        chainrule.device("cuda:x")
    assert chainrule.device("cuda:1").index == 1


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU with CuPy to put two "
                                                 "tensors on different devices")
def test_device_mismatch():
    a = chainrule.ones(3)
    b = chainrule.ones(3, device="cuda")
    for op, name in [(lambda: a + b, "add"), (lambda: a @ b, "matmul"),
                     (lambda: chainrule.cat([a, b]), "cat")]:
        with raises(DeviceError, name, "cpu", "cuda"):
            op()
    x = chainrule.zeros(3)
    with raises(DeviceError, "cpu", "cuda"):
        x[0:3] = b
    assert x.tolist() == [0.0] * 3


# ================================================================ nothing half-done
def _snapshot(*ts):
    return [(t._version, t.detach().numpy().copy(), t.shape, t.dtype) for t in ts]


def _assert_unchanged(before, *ts):
    for (v, data, shape, dtype), t in zip(before, ts):
        assert t._version == v and t.shape == shape and t.dtype is dtype
        np.testing.assert_array_equal(t.detach().numpy(), data)


@pytest.mark.parametrize("name,fail", [
    ("add_ shape", lambda x, y: x.add_(chainrule.ones(2, 2, 3))),
    ("+= shape", lambda x, y: x.__iadd__(chainrule.ones(4))),
    ("mul_ shape", lambda x, y: x.mul_(chainrule.ones(3, 2))),
    ("int += float", lambda x, y: y.__iadd__(0.5)),
    ("int /= int", lambda x, y: y.div_(2)),
    ("copy_ shape", lambda x, y: x.copy_(chainrule.ones(4))),
    ("clamp_ no bounds", lambda x, y: x.clamp_()),
    ("setitem shape", lambda x, y: x.__setitem__(0, chainrule.ones(5))),
    ("setitem index", lambda x, y: x.__setitem__((0, 9), 1.0)),
    ("setitem float into int", lambda x, y: y.__setitem__(0, 2.5)),
    ("masked_fill_ shape", lambda x, y: x.masked_fill_(chainrule.ones(4, dtype=chainrule.bool_),
                                                       0.0)),
])
def test_failed_inplace_op_leaves_operands_unchanged(name, fail):
    x = chainrule.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    y = chainrule.tensor([[1, 2, 3], [4, 5, 6]])
    before = _snapshot(x, y)
    with pytest.raises((ShapeError, TypeError, ValueError, IndexError)):
        fail(x, y)
    _assert_unchanged(before, x, y)


def test_failed_inplace_op_on_a_recorded_tensor_leaves_its_graph():
    x = _leaf(3)
    y = x * 2
    node = y.grad_fn
    before = _snapshot(y)
    with pytest.raises(ShapeError):
        y.add_(chainrule.ones(2, 3, dtype=chainrule.float64))
    _assert_unchanged(before, y)
    assert y.grad_fn is node
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_failed_inplace_op_on_a_leaf_requiring_grad_leaves_it_unchanged():
    x = _leaf(3)
    before = _snapshot(x)
    with pytest.raises(GraphError):
        x.mul_(2.0)
    _assert_unchanged(before, x)
    assert x.is_leaf and x.requires_grad


def test_failed_op_records_nothing_and_leaves_inputs_unchanged():
    a, b = _leaf(2, 3), _leaf(4)
    before = _snapshot(a, b)
    with pytest.raises(ShapeError):
        a + b
    _assert_unchanged(before, a, b)
    (a.sum() + b.sum()).backward()
    assert a.grad.tolist() == [[1.0] * 3] * 2 and b.grad.tolist() == [1.0] * 4


def test_failed_backward_leaves_grads_unchanged():
    x = _leaf(2)
    (x * 3).sum().backward()
    y = x * 2
    with pytest.raises(ShapeError):
        y.backward(chainrule.ones(3, dtype=chainrule.float64))
    with pytest.raises(GraphError):
        y.backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_arithmetic_refused_on_two_bools_as_in_pytorch():
    a, b = chainrule.tensor([True, False]), chainrule.tensor([True, True])
    for op, name in ((lambda: a // b, "floor_divide"), (lambda: a % b, "remainder"),
                     (lambda: a ** b, "pow"), (lambda: True ** a, "pow"),
                     (lambda: a // True, "floor_divide")):
        with pytest.raises(TypeError, match=rf"{name}: not supported for bool operands"):
            op()
    # with a number or a non-bool tensor the bools promote, as in PyTorch
    assert (a // 2).dtype == chainrule.int64 and (a ** 2).tolist() == [1, 0]
    assert (chainrule.tensor([3]) // b).tolist() == [3, 3]
    # PyTorch keeps bool for a Python-bool exponent: x ** True is x, x ** False is ones
    assert (a ** True).dtype == chainrule.bool_ and (a ** True).tolist() == [True, False]
    assert (a ** False).tolist() == [True, True]


# ================================================================ PyTorch's semantics (issue 17)
def test_ops_give_ieee_values_without_numpy_warnings():
    import warnings

    x = chainrule.zeros(1, dtype=chainrule.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the test
        assert chainrule.log(chainrule.zeros(1)).item() == -np.inf
        assert (chainrule.ones(1) / chainrule.zeros(1)).item() == np.inf
        assert np.isnan((chainrule.zeros(1) / chainrule.zeros(1)).item())
        assert chainrule.exp(chainrule.tensor([1000.0])).item() == np.inf
        assert (chainrule.tensor([3e38]) * 10).item() == np.inf
        assert np.isnan(chainrule.sqrt(chainrule.tensor([-1.0])).item())
        assert (chainrule.tensor([3e38, 3e38]).sum()).item() == np.inf
        chainrule.log(x).sum().backward()  # the backward ops too: d log(x) at 0 is inf
        assert x.grad.item() == np.inf
        w = chainrule.tensor([3e38, 1.0], requires_grad=True)  # optimisers, clipping
        w.grad = chainrule.tensor([3e38, 1.0])
        assert chainrule.nn.utils.clip_grad_norm_([w], 1.0).item() == np.inf
        w.grad = chainrule.tensor([3e38, 1.0])
        chainrule.optim.SGD([w], lr=10.0).step()
        assert w[0].item() == -np.inf
        v = chainrule.tensor([1e30, 1.0], requires_grad=True)
        lbfgs = chainrule.optim.LBFGS([v], lr=1e30)

        def closure():
            lbfgs.zero_grad()
            loss = ((v * 1e10) ** 2).sum()
            loss.backward()
            return loss

        lbfgs.step(closure)
    # the user's own NumPy error state is untouched
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning):
            np.log(np.zeros(1))
    with np.errstate(all="raise"):
        assert chainrule.log(chainrule.zeros(1)).item() == -np.inf
        with pytest.raises(FloatingPointError):
            np.log(np.zeros(1))


def test_view_of_a_non_contiguous_tensor_raises_like_pytorch():
    x = chainrule.arange(6).view(2, 3)
    with raises(RuntimeError, r"view: shape \[6\]", r"\(3, 2\)", r"use \.reshape"):
        x.T.view(6)
    with raises(ShapeError, r"use \.reshape"):
        x[:, :2].view(4)
    v = x[:, :2].view(2, 2, 1)  # strides allow this one: it is a real view
    v[0, 0, 0] = 9
    assert x[0, 0].item() == 9
    assert x.T.reshape(6).tolist() == [9, 3, 1, 4, 2, 5]  # reshape copies where it must
    assert x.T.contiguous().view(6).tolist() == [9, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("op", [lambda a, b: a // b, lambda a, b: a % b,
                                lambda a, b: chainrule.floor_divide(a, b)])
def test_integer_division_by_zero_raises_like_pytorch(op):
    a = chainrule.tensor([7, -7])
    for b in (0, chainrule.tensor([2, 0]), chainrule.tensor(0, dtype=chainrule.int32)):
        with raises(RuntimeError, "ZeroDivisionError"):
            op(a, b)
    with raises(RuntimeError, "ZeroDivisionError"):
        op(3, chainrule.tensor([1, 0]))
    want = op(np.array([7, -7]), np.array([2, 3])).tolist()
    assert op(a, chainrule.tensor([2, 3])).tolist() == want
    r = op(chainrule.tensor([7.0]), 0)  # floats: IEEE values, as in PyTorch
    assert not np.isfinite(r.item())


def test_shape_errors_are_runtime_errors_too():
    assert issubclass(ShapeError, RuntimeError) and issubclass(ShapeError, ValueError)
    with pytest.raises(RuntimeError, match="add"):
        chainrule.ones(3) + chainrule.ones(4)
    with pytest.raises(ValueError):
        chainrule.ones(2, 3) @ chainrule.ones(4)


def test_matmul_refuses_mixed_dtypes_like_pytorch():
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.ones(2, 3) @ torch.ones(3, dtype=torch.float64)
    with raises(RuntimeError, "matmul", "float32", "float64", r"\.to\(dtype\)"):
        chainrule.ones(2, 3) @ chainrule.ones(3, dtype=chainrule.float64)
    with raises(RuntimeError, "int64", "float32"):
        chainrule.matmul(chainrule.ones(2, 2, dtype=chainrule.int64), chainrule.ones(2, 2))
    assert (chainrule.ones(2, 3) @ chainrule.ones(3)).tolist() == [3.0, 3.0]


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
@pytest.mark.parametrize("shapes", [((4, 1), (4,)), ((4,), (4, 1)), ((2, 3), (3,))])
def test_regression_losses_warn_and_broadcast_like_pytorch(name, shapes):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF

    import chainrule.nn.functional as F

    rng = np.random.default_rng(0)
    x, t = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    with pytest.warns(UserWarning) as theirs:
        want = getattr(TF, name)(torch.tensor(x), torch.tensor(t))
    with pytest.warns(UserWarning, match=r"Using a target size \(.*\) that is different to the "
                      r"input size .* Please ensure they have the same size\.") as ours:
        got = getattr(F, name)(chainrule.tensor(x), chainrule.tensor(t))
    assert "Please ensure they have the same size" in str(theirs[0].message)
    assert name in str(ours[0].message) and str(tuple(shapes[1])) in str(ours[0].message)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)


def test_losses_that_pytorch_refuses_for_other_shapes_stay_errors():
    import chainrule.nn.functional as F

    p, t = chainrule.full((4, 1), 0.5), chainrule.ones(4)
    with raises(ValueError, "binary_cross_entropy"):
        F.binary_cross_entropy(p, t)
    with raises(ValueError, "binary_cross_entropy_with_logits"):
        F.binary_cross_entropy_with_logits(p, t)
    with raises(ShapeError, "mse_loss", "cannot be broadcast"):
        F.mse_loss(chainrule.ones(3), chainrule.ones(4))


def test_an_allocation_that_cannot_be_satisfied_is_an_out_of_memory_error():
    from chainrule import OutOfMemoryError

    assert issubclass(OutOfMemoryError, RuntimeError) and issubclass(OutOfMemoryError,
                                                                     MemoryError)
    with raises(OutOfMemoryError, "zeros", r"\(1099511627776, 1048576\)", "float32"):
        chainrule.zeros(2**40, 2**20)
    with raises(OutOfMemoryError, "full", "int64"):
        chainrule.full((2**40, 2**10), 3)
    a = chainrule.ones(2**20, dtype=chainrule.float64)
    with raises(OutOfMemoryError, "mul", r"\(1048576, 1048576\)", r"\(1048576, 1\)"):
        a.reshape(-1, 1) * a.reshape(1, -1)
