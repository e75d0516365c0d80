"""The Tensor: creation functions, attributes and methods, repr, type promotion, in-place ops
and seeded randomness, with PyTorch's names and semantics (compared with PyTorch itself where
it is installed, and with the rules written out otherwise)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import chainrule
from chainrule import ShapeError

try:
    import torch
except ImportError:  # the hard-coded rules below still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")

DTYPES = ["bool", "int32", "int64", "float32", "float64"]


def _dt(name):
    return getattr(chainrule, name if name != "bool" else "bool_")


# ================================================================ creation
@pytest.mark.parametrize("data,dtype", [
    ([1.0, 2.0], "float32"), ([1, 2], "int64"), ([True, False], "bool"), (2.5, "float32"),
    (3, "int64"), (True, "bool"), ([1, 2.5], "float32"), ([[1, 2], [3, 4]], "int64"),
    ([], "float32"), (np.array([1.0]), "float64"), (np.array([1], dtype=np.int32), "int32"),
    (np.float64(1.0), "float64"), ([np.int64(1), 2], "int64"),
])
def test_tensor_infers_dtype_like_torch(data, dtype):
    t = chainrule.tensor(data)
    assert t.dtype is _dt(dtype)
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))
    if torch is not None:
        assert str(torch.tensor(data).dtype) == f"torch.{dtype}"


def test_tensor_copies_and_takes_dtype_device_requires_grad():
    a = np.array([1.0, 2.0])
    t = chainrule.tensor(a, dtype=chainrule.float32, device="cpu", requires_grad=True)
    a[0] = 5.0
    assert t.tolist() == [1.0, 2.0] and t.dtype is chainrule.float32
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    u = chainrule.tensor(t)
    assert not u.requires_grad and u.tolist() == [1.0, 2.0]
    assert chainrule.tensor([1, 2], dtype="float64").dtype is chainrule.float64
    assert chainrule.tensor([1, 2], dtype=float).dtype is chainrule.float32


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_requires_grad_on_non_float_tensor_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=f"floating.*{dtype}"):
        chainrule.tensor([1, 0], dtype=_dt(dtype), requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        chainrule.zeros(2, dtype=_dt(dtype)).requires_grad_()


def test_zeros_ones_empty_full():
    assert chainrule.zeros(2, 3).tolist() == [[0.0] * 3] * 2
    assert chainrule.zeros((2, 3)).shape == (2, 3) == chainrule.ones([2, 3]).shape
    assert chainrule.zeros(()).shape == () and chainrule.ones(0).shape == (0,)
    assert chainrule.ones(2, dtype=chainrule.int64).tolist() == [1, 1]
    assert chainrule.empty(2, 4).shape == (2, 4) and chainrule.empty(1).dtype is chainrule.float32
    assert chainrule.zeros(2, requires_grad=True).requires_grad
    # full takes its dtype from the fill value, as in PyTorch
    assert chainrule.full((2,), 7).dtype is chainrule.int64
    assert chainrule.full((2,), 7.5).dtype is chainrule.float32
    assert chainrule.full((2,), True).dtype is chainrule.bool_
    assert chainrule.full((2, 2), 3.0, dtype=chainrule.float64).tolist() == [[3.0] * 2] * 2
    with pytest.raises(ValueError, match="negative"):
        chainrule.zeros(2, -1)


def test_like_functions_keep_shape_dtype_device():
    x = chainrule.ones(2, 3, dtype=chainrule.int32)
    for f in (chainrule.zeros_like, chainrule.ones_like, chainrule.empty_like):
        y = f(x)
        assert y.shape == (2, 3) and y.dtype is chainrule.int32 and y.device == x.device
    assert chainrule.zeros_like(x).tolist() == [[0] * 3] * 2
    assert chainrule.ones_like(x, dtype=chainrule.float64).dtype is chainrule.float64
    assert chainrule.full_like(x, 7).tolist() == [[7] * 3] * 2
    assert chainrule.full_like(chainrule.zeros(2), 2.5).tolist() == [2.5, 2.5]
    assert chainrule.zeros_like(chainrule.zeros(2), requires_grad=True).requires_grad


def test_rand_randn_randint():
    r = chainrule.rand(1000)
    assert r.dtype is chainrule.float32 and r.shape == (1000,)
    assert float(r.min()) >= 0.0 and float(r.max()) < 1.0 and 0.4 < float(r.mean()) < 0.6
    n = chainrule.randn(2000, dtype=chainrule.float64)
    assert n.dtype is chainrule.float64 and abs(float(n.mean())) < 0.1
    assert 0.9 < float(n.std()) < 1.1
    assert chainrule.randn(2, 3).shape == (2, 3) and chainrule.rand((4,)).shape == (4,)
    i = chainrule.randint(10, (500,))
    assert i.dtype is chainrule.int64 and 0 <= int(i.min()) and int(i.max()) < 10
    j = chainrule.randint(3, 6, (500,))
    assert set(j.tolist()) == {3, 4, 5}
    assert chainrule.randint(0, 2, (2, 2), dtype=chainrule.int32).dtype is chainrule.int32
    with pytest.raises(TypeError):
        chainrule.rand(2, dtype=chainrule.int64)
    with pytest.raises(ValueError):
        chainrule.randint(5, 5, (2,))


def test_arange_linspace_eye():
    assert chainrule.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert chainrule.arange(5).dtype is chainrule.int64
    assert chainrule.arange(2, 8, 3).tolist() == [2, 5]
    a = chainrule.arange(1, 2, 0.25)
    assert a.dtype is chainrule.float32 and a.tolist() == [1.0, 1.25, 1.5, 1.75]
    assert chainrule.arange(5, 0, -2).tolist() == [5, 3, 1]
    assert chainrule.arange(3, dtype=chainrule.float64).dtype is chainrule.float64
    lin = chainrule.linspace(0, 1, 5)
    assert lin.dtype is chainrule.float32 and lin.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert chainrule.linspace(-1, 1, 1).tolist() == [-1.0]
    assert chainrule.eye(3).tolist() == np.eye(3).tolist()
    e = chainrule.eye(2, 3, dtype=chainrule.int64)
    assert e.dtype is chainrule.int64 and e.tolist() == [[1, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError):
        chainrule.arange(0, 5, 0)


def test_from_numpy_shares_memory_and_keeps_dtype():
    a = np.zeros(3, dtype=np.float64)
    t = chainrule.from_numpy(a)
    assert t.dtype is chainrule.float64
    a[1] = 4.0
    assert t.tolist() == [0.0, 4.0, 0.0]
    t.add_(1.0)
    assert a.tolist() == [1.0, 5.0, 1.0]
    with pytest.raises(TypeError):
        chainrule.from_numpy([1.0, 2.0])


@needs_torch
def test_creation_dtypes_match_torch():
    pairs = [
        (chainrule.zeros(2), torch.zeros(2)), (chainrule.arange(3), torch.arange(3)),
        (chainrule.arange(0.0, 1.0, 0.5), torch.arange(0.0, 1.0, 0.5)),
        (chainrule.full((1,), 2), torch.full((1,), 2)),
        (chainrule.full((1,), 2.0), torch.full((1,), 2.0)),
        (chainrule.linspace(0, 1, 3), torch.linspace(0, 1, 3)),
        (chainrule.eye(2), torch.eye(2)), (chainrule.randint(3, (2,)), torch.randint(3, (2,))),
        (chainrule.rand(2), torch.rand(2)), (chainrule.randn(2), torch.randn(2)),
    ]
    for ours, theirs in pairs:
        assert str(theirs.dtype) == f"torch.{ours.dtype.name}"
        assert ours.shape == tuple(theirs.shape)


# ================================================================ attributes and methods
def test_shape_ndim_size_numel_dtype_device():
    x = chainrule.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and isinstance(x.shape, tuple)
    assert x.ndim == 3 and x.dim() == 3
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.numel() == 24 and chainrule.zeros(()).numel() == 1
    assert x.dtype is chainrule.float32
    assert x.device == chainrule.device("cpu") and x.device == "cpu"
    assert repr(x.device) == "device(type='cpu')" and str(x.device) == "cpu"
    assert len(x) == 2
    with pytest.raises(IndexError):
        x.size(3)


def test_T_and_mT():
    x = chainrule.arange(6).reshape(2, 3)
    assert x.T.tolist() == [[0, 3], [1, 4], [2, 5]]
    b = chainrule.arange(24).reshape(2, 3, 4)
    assert b.mT.shape == (2, 4, 3) and b.T.shape == (4, 3, 2)
    np.testing.assert_array_equal(b.mT.numpy(), np.swapaxes(b.numpy(), -1, -2))


def test_item_tolist():
    assert chainrule.tensor(2.5).item() == 2.5 and isinstance(chainrule.tensor(2.5).item(), float)
    assert isinstance(chainrule.tensor([3]).item(), int)
    assert chainrule.tensor(True).item() is True
    with pytest.raises((ValueError, RuntimeError), match=r"2 elements|one element"):
        chainrule.tensor([1.0, 2.0]).item()
    assert chainrule.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]]
    assert chainrule.tensor(2.0).tolist() == 2.0


def test_numpy_and_array_protocol():
    x = chainrule.tensor([[1.0, 2.0], [3.0, 4.0]])
    n = x.numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float32
    n[0, 0] = 9.0  # shares memory, as in PyTorch
    assert x[0, 0].item() == 9.0
    assert np.asarray(x).dtype == np.float32
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    assert np.array(x).shape == (2, 2)
    w = chainrule.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        w.numpy()
    assert w.detach().numpy().tolist() == [1.0, 1.0]


def test_numpy_operands_on_the_left_give_tensors():
    x = chainrule.tensor([1.0, 2.0], requires_grad=True)
    for y in (np.array([2.0, 3.0]) * x, np.float32(2.0) + x, np.array([1.0, 1.0]) - x):
        assert isinstance(y, chainrule.Tensor) and y.requires_grad


def test_detach_clone_contiguous():
    x = chainrule.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.tolist() == [2.0, 4.0]
    with chainrule.no_grad():
        d.add_(1.0)  # shares data with y, as in PyTorch
    assert y.tolist() == [3.0, 5.0]
    c = x.clone()
    assert c.requires_grad and not c.is_leaf and c.tolist() == x.tolist()
    (c * c).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    with chainrule.no_grad():
        c2 = x.clone()
        c2.add_(10.0)
    assert x.tolist() == [1.0, 2.0]
    m = chainrule.arange(6.0).reshape(2, 3)
    t = m.T
    assert not t.is_contiguous()
    tc = t.contiguous()
    assert tc.is_contiguous() and tc.tolist() == t.tolist()
    assert m.contiguous() is m


def test_requires_grad_flag():
    x = chainrule.ones(2)
    assert not x.requires_grad
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    x.requires_grad = True
    assert x.requires_grad
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    with pytest.raises(RuntimeError):
        y.requires_grad_(False)


def test_to_and_casts():
    x = chainrule.tensor([1.5, -2.5])
    assert x.to(chainrule.float64).dtype is chainrule.float64
    assert x.to("float64").dtype is chainrule.float64
    assert x.to("cpu") is x and x.to(chainrule.device("cpu")) is x
    assert x.to(chainrule.float32) is x
    assert x.to(chainrule.ones(1, dtype=chainrule.int32)).dtype is chainrule.int32
    assert x.to("cpu", chainrule.float64).dtype is chainrule.float64
    assert x.to(dtype=chainrule.int64).tolist() == [1, -2]
    assert x.float().dtype is chainrule.float32
    assert x.double().dtype is chainrule.float64
    assert x.long().dtype is chainrule.int64 and x.long().tolist() == [1, -2]
    assert x.int().dtype is chainrule.int32
    assert x.bool().dtype is chainrule.bool_ and x.bool().tolist() == [True, True]
    # a float cast is differentiable
    w = chainrule.tensor([1.0, 2.0], requires_grad=True)
    (w.double() * 3).sum().backward()
    assert w.grad.dtype is chainrule.float32 and w.grad.tolist() == [3.0, 3.0]


# ================================================================ repr
_REPR_CASES = [
    ([1.0, 2.0], None), ([1.5, -2.25], None), ([[1.0, 2.5], [3.0, 4.0]], None),
    ([1, 2, 3], None), ([1, -20], "int32"), ([True, False], None), (2.5, None), (3, None),
    ([], None), ([0.0], None), ([1.5, 2.0], "float64"), ([[1, 2], [3, 4]], "float64"),
    ([0.1, 0.123456], None),
]


def _expected_repr(data, dtype):
    """PyTorch's repr with 'torch.' spelled 'chainrule.'."""
    t = torch.tensor(data, dtype=getattr(torch, dtype) if dtype else None)
    return repr(t).replace("torch.", "chainrule.")


@needs_torch
@pytest.mark.parametrize("data,dtype", _REPR_CASES)
def test_repr_matches_torch(data, dtype):
    assert repr(chainrule.tensor(data, dtype=dtype)) == _expected_repr(data, dtype)


@needs_torch
@pytest.mark.parametrize("data", [[1e8, 1.0], [1e-5, 1.0], [0.1, 123456.0],
                                  [float("nan"), 1.5], [float("inf"), 1.0]])
def test_repr_matches_torch_for_wide_ranges_and_non_finite(data):
    assert repr(chainrule.tensor(data)) == _expected_repr(data, None)


def test_repr_rules():
    assert repr(chainrule.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(chainrule.tensor([1.5, 2.0])) == "tensor([1.5000, 2.0000])"
    assert repr(chainrule.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(chainrule.tensor(3.0)) == "tensor(3.)"
    assert repr(chainrule.tensor([1.0], dtype=chainrule.float64)) == \
        "tensor([1.], dtype=chainrule.float64)"
    assert repr(chainrule.tensor([1.0], requires_grad=True)) == \
        "tensor([1.], requires_grad=True)"
    y = chainrule.tensor([1.0], requires_grad=True) * 2
    assert repr(y) == "tensor([2.], grad_fn=<MulBackward>)"
    assert repr(chainrule.zeros(2, 0)) == "tensor([], size=(2, 0))"
    assert repr(chainrule.zeros(0)) == "tensor([])"


# ================================================================ type promotion
# PyTorch's rules, written out: (left dtype, left ndim, right dtype, right ndim) -> result
_PROMOTION = [
    ("int64", 1, "float32", 1, "float32"), ("int32", 1, "int64", 1, "int64"),
    ("float32", 1, "float64", 1, "float64"), ("bool", 1, "int32", 1, "int32"),
    ("bool", 1, "bool", 1, "bool"), ("float32", 1, "float64", 0, "float32"),
    ("int32", 1, "int64", 0, "int32"), ("int32", 1, "float64", 0, "float64"),
    ("bool", 1, "float64", 0, "float64"), ("int64", 0, "float32", 1, "float32"),
    ("float64", 0, "float32", 0, "float64"), ("int32", 0, "int64", 0, "int64"),
    ("float32", 0, "int64", 1, "float32"), ("bool", 0, "int32", 1, "int32"),
]
_SCALAR_PROMOTION = [
    ("int64", 2.5, "float32"), ("int32", 2, "int32"), ("int32", 2.5, "float32"),
    ("float64", 2.5, "float64"), ("float32", 2, "float32"), ("bool", 2, "int64"),
    ("bool", 2.5, "float32"), ("bool", True, "bool"), ("int32", True, "int32"),
    ("float32", True, "float32"),
]


def _t(dtype, ndim):
    return chainrule.ones(*(() if ndim == 0 else (2,)), dtype=_dt(dtype))


@pytest.mark.parametrize("a,na,b,nb,expected", _PROMOTION)
def test_promotion_rules(a, na, b, nb, expected):
    for op in (lambda x, y: x + y, lambda x, y: x * y, lambda x, y: y - x if b != "bool"
               else y * x, chainrule.maximum, lambda x, y: chainrule.where(x > 0, x, y)):
        assert op(_t(a, na), _t(b, nb)).dtype is _dt(expected)


@pytest.mark.parametrize("a,s,expected", _SCALAR_PROMOTION)
def test_scalar_promotion_rules(a, s, expected):
    for nd in (0, 1):
        assert (_t(a, nd) * s).dtype is _dt(expected)
        assert (s * _t(a, nd)).dtype is _dt(expected)


def test_true_division_and_comparisons():
    assert (chainrule.tensor([1, 2]) / 2).dtype is chainrule.float32
    assert (chainrule.tensor([1, 2]) / chainrule.tensor([2, 2])).tolist() == [0.5, 1.0]
    assert (chainrule.tensor([7, -7]) // 2).tolist() == [3, -4]
    assert (chainrule.tensor([7, -7]) // 2).dtype is chainrule.int64
    assert (chainrule.tensor([5, -5]) % 3).tolist() == [2, 1]
    for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
        r = getattr(chainrule.tensor([1, 2]), op)(1.5)
        assert r.dtype is chainrule.bool_
    assert chainrule.cat([chainrule.ones(1, dtype=chainrule.int32),
                          chainrule.ones(1, dtype=chainrule.float64)]).dtype is chainrule.float64


def test_default_dtype():
    assert chainrule.get_default_dtype() is chainrule.float32
    chainrule.set_default_dtype(chainrule.float64)
    try:
        assert chainrule.tensor([1.0]).dtype is chainrule.float64
        assert chainrule.zeros(1).dtype is chainrule.float64
        assert (chainrule.tensor([1]) * 2.5).dtype is chainrule.float64
    finally:
        chainrule.set_default_dtype(chainrule.float32)
    with pytest.raises(TypeError):
        chainrule.set_default_dtype(chainrule.int64)


@needs_torch
def test_promotion_matches_torch_result_type():
    ops = [lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x / y,
           lambda x, y: x == y, chainrule.maximum]
    tops = [lambda x, y: x + y, lambda x, y: x * y, lambda x, y: x / y,
            lambda x, y: x == y, torch.maximum]
    for a, b in itertools.product(DTYPES, DTYPES):
        for na, nb in itertools.product((0, 1), (0, 1)):
            x = torch.ones(() if na == 0 else (2,), dtype=getattr(torch, a))
            y = torch.ones(() if nb == 0 else (2,), dtype=getattr(torch, b))
            assert _t(a, na).__add__(_t(b, nb)).dtype.name == \
                str(torch.result_type(x, y)).removeprefix("torch."), (a, na, b, nb)
            for op, top in zip(ops, tops):
                want = str(top(x, y).dtype).removeprefix("torch.")
                assert op(_t(a, na), _t(b, nb)).dtype.name == want, (a, na, b, nb)
        for s in (True, 3, 2.5):
            for na in (0, 1):
                x = torch.ones(() if na == 0 else (2,), dtype=getattr(torch, a))
                want = str(torch.result_type(x, s)).removeprefix("torch.")
                assert (_t(a, na) * s).dtype.name == want, (a, na, s)
                assert (s * _t(a, na)).dtype.name == want, (a, na, s)


# ================================================================ in-place ops
def test_inplace_methods_values_identity_and_versions():
    x = chainrule.tensor([1.0, 2.0, 3.0])
    v = x._version
    assert x.add_(1.0) is x and x.tolist() == [2.0, 3.0, 4.0]
    assert x.sub_(chainrule.tensor([1.0, 1.0, 1.0])) is x and x.tolist() == [1.0, 2.0, 3.0]
    assert x.mul_(2) is x and x.tolist() == [2.0, 4.0, 6.0]
    assert x.div_(4) is x and x.tolist() == [0.5, 1.0, 1.5]
    assert x.add_(chainrule.ones(3), alpha=2).tolist() == [2.5, 3.0, 3.5]
    assert x.sub_(1.0, alpha=0.5).tolist() == [2.0, 2.5, 3.0]
    assert x.clamp_(2.2, 2.8) is x and x.tolist() == pytest.approx([2.2, 2.5, 2.8])
    assert x.clamp_(max=2.4).tolist() == pytest.approx([2.2, 2.4, 2.4])
    assert x.fill_(7.0) is x and x.tolist() == [7.0, 7.0, 7.0]
    assert x.copy_(chainrule.tensor([1, 2, 3])) is x and x.tolist() == [1.0, 2.0, 3.0]
    assert x.dtype is chainrule.float32
    assert x.copy_(chainrule.tensor(5.0)).tolist() == [5.0, 5.0, 5.0]  # broadcasts
    assert x.zero_() is x and x.tolist() == [0.0, 0.0, 0.0]
    assert x._version == v + 12


def test_inplace_operators():
    x = chainrule.tensor([1.0, 2.0])
    ref = x
    x += 1
    x -= chainrule.tensor([0.5, 0.5])
    x *= 4
    x /= 2
    assert x is ref and x.tolist() == [3.0, 5.0]
    m = chainrule.ones(2, 3)
    m += chainrule.tensor([1.0, 2.0, 3.0])  # the other operand broadcasts
    assert m.tolist() == [[2.0, 3.0, 4.0]] * 2
    i = chainrule.tensor([1, 2])
    i *= 3
    assert i.dtype is chainrule.int64 and i.tolist() == [3, 6]


def test_inplace_keeps_dtype_and_shape():
    x = chainrule.ones(3)  # float32
    x.add_(chainrule.ones(3, dtype=chainrule.float64))
    assert x.dtype is chainrule.float32
    i = chainrule.tensor([1, 2])
    with pytest.raises(TypeError, match=r"float32|Float|cast"):
        i += 1.5  # PyTorch: result type Float can't be cast to Long
    assert i.tolist() == [1, 2]
    with pytest.raises(ShapeError):
        x.add_(chainrule.ones(2, 3))  # the result would not fit in x
    assert x.tolist() == [2.0, 2.0, 2.0]


def test_inplace_on_a_view_writes_through_to_the_base():
    base = chainrule.zeros(2, 3)
    row = base[1]
    row.add_(1.0)
    base[:, 0].mul_(5.0)
    base.T[2].fill_(4.0)
    assert base.tolist() == [[0.0, 0.0, 4.0], [5.0, 1.0, 4.0]]
    assert row.tolist() == [5.0, 1.0, 4.0]


def test_setitem_writes_in_place():
    x = chainrule.zeros(3, 4)
    v = x._version
    x[1] = 1.0
    x[:, 0] = chainrule.tensor([7.0, 8.0, 9.0])
    x[chainrule.tensor([0, 2]), 3] = 2.0
    x[x > 8.5] = -1.0
    x[..., 1] += 1.0
    assert x.tolist() == [[7.0, 1.0, 0.0, 2.0], [8.0, 2.0, 1.0, 1.0], [-1.0, 1.0, 0.0, 2.0]]
    assert x._version > v


def test_inplace_ops_on_recorded_tensors_keep_gradients_right():
    x = chainrule.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.mul_(3)
    y += x
    y.sum().backward()
    assert x.grad.tolist() == [7.0, 7.0]


@pytest.mark.parametrize("method,args", [("fill_", (0.0,)), ("zero_", ()),
                                         ("copy_", (chainrule.zeros(2),))])
def test_overwriting_a_recorded_tensor_cuts_its_gradient(method, args):
    # y's old value is overwritten by a constant: y no longer depends on x (PyTorch records
    # FillBackward / CopyBackwards, whose gradient to the old y is zero)
    x = chainrule.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    getattr(y, method)(*args)
    (y * 3 + x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_copy_from_a_tensor_that_requires_grad_joins_the_graph():
    for src in (chainrule.tensor([1.0, 2.0], requires_grad=True),  # a leaf
                chainrule.tensor([1.0, 2.0], requires_grad=True) * 1):  # a non-leaf
        x = chainrule.zeros(2)
        x.copy_(src)
        assert x.requires_grad and x.tolist() == [1.0, 2.0]
        (x * 3).sum().backward()
        leaf = src if src.is_leaf else src.grad_fn.next_functions[0][0]
        assert leaf.grad.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("write", [lambda v: v.mul_(10.0),
                                   lambda v: v.__setitem__(slice(None), v * 10.0)])
def test_inplace_on_a_view_of_a_recorded_tensor_writes_through(write):
    # PyTorch: an in-place op on a view changes the base and the base's gradient follows
    x = chainrule.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    write(y[1:])
    assert y.tolist() == [1.0, 20.0, 30.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 10.0, 10.0]


def test_a_view_sees_inplace_changes_of_a_recorded_base():
    x = chainrule.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    v = y[:2]
    y.add_(1.0)
    assert v.tolist() == [2.0, 3.0]


# ================================================================ randomness
def test_manual_seed_reproduces_every_random_function():
    def draw():
        return (chainrule.rand(3).tolist(), chainrule.randn(2, 2).tolist(),
                chainrule.randint(0, 100, (4,)).tolist(), chainrule.randperm(5).tolist(),
                chainrule.empty(3).normal_().tolist(), chainrule.empty(2).uniform_(-1, 1).tolist())

    chainrule.manual_seed(123)
    a = draw()
    chainrule.manual_seed(123)
    b = draw()
    chainrule.manual_seed(124)
    c = draw()
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_generator_is_independent_of_the_global_seed():
    g = chainrule.Generator().manual_seed(7)
    a = chainrule.randn(4, generator=g).tolist()
    chainrule.manual_seed(0)
    chainrule.rand(10)
    g.manual_seed(7)
    assert chainrule.randn(4, generator=g).tolist() == a
    assert g.initial_seed() == 7


def test_rng_state_roundtrip():
    state = chainrule.get_rng_state()
    a = chainrule.rand(3).tolist()
    chainrule.set_rng_state(state)
    assert chainrule.rand(3).tolist() == a


def test_and_or_xor_are_bitwise_on_integers_and_logical_on_bools():
    a, b = chainrule.tensor([12, 10, -1]), chainrule.tensor([10, 6, 5])
    assert (a & b).tolist() == [8, 2, 5]
    assert (a | b).tolist() == [14, 14, -1]
    assert (a ^ b).tolist() == [6, 12, -6]
    assert (3 & b).tolist() == [2, 2, 1]
    t, f = chainrule.tensor([True, True, False]), chainrule.tensor([True, False, False])
    assert (t & f).tolist() == [True, False, False]
    assert (t | f).dtype is chainrule.bool and (t ^ f).tolist() == [False, True, False]
    with pytest.raises(TypeError, match="bitwise_and"):
        chainrule.ones(2) & chainrule.ones(2)
