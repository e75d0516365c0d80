"""Elementwise ops with PyTorch names and type promotion.

Example:
    >>> import chainrule
    >>> chainrule.tensor([1, 2]) / 2
    tensor([0.5000, 1.0000])
"""

from __future__ import annotations

import math

from .. import backend
from ..primitives import elementwise as P
from ..tensor import Tensor
from ._util import cast, float_operands, method, promote, to_tensor_like


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else to_tensor_like(x)


def _float_unary(x) -> Tensor:
    """Unary float functions of integer tensors compute in the default float dtype."""
    x = _t(x)
    if x._data.dtype.kind not in "fV":
        x = cast(x, backend.default_float())
    return x


# ---------------------------------------------------------------- arithmetic
@method
def add(input, other, *, alpha=1) -> Tensor:
    """input + alpha * other, broadcasting.

    Example:
        >>> import chainrule
        >>> chainrule.add(chainrule.ones(2), chainrule.ones(2), alpha=3)
        tensor([4., 4.])
    """
    if alpha != 1:
        other = mul(other, alpha)
    return P.add(*promote(input, other, "add"))


@method
def sub(input, other, *, alpha=1) -> Tensor:
    """input - alpha * other.

    Example:
        >>> import chainrule
        >>> chainrule.sub(chainrule.ones(1), 2.0)
        tensor([-1.])
    """
    if alpha != 1:
        other = mul(other, alpha)
    return P.sub(*promote(input, other, "sub"))


@method
def mul(input, other) -> Tensor:
    """Elementwise product.

    Example:
        >>> import chainrule
        >>> chainrule.mul(chainrule.tensor([1.0, 2.0]), 3)
        tensor([3., 6.])
    """
    return P.mul(*promote(input, other, "mul"))


@method
def div(input, other, *, rounding_mode=None) -> Tensor:
    """True division (integers give floats); rounding_mode 'floor' or 'trunc' as in PyTorch.

    Example:
        >>> import chainrule
        >>> chainrule.div(chainrule.tensor([3, 4]), 2)
        tensor([1.5000, 2.0000])
    """
    if rounding_mode == "floor":
        return floor_divide(input, other)
    q = P.div(*float_operands(input, other, "div"))
    if rounding_mode == "trunc":
        q = trunc(q)
        a = input if isinstance(input, Tensor) else other
        if a._data.dtype.kind not in "fV":
            q = cast(q, a.dtype)
    elif rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None, 'floor' or 'trunc', got "
                         f"{rounding_mode!r}")
    return q


true_divide = method(div, "true_divide")


def _is_bool(x) -> bool:
    return isinstance(x, bool) or (isinstance(x, Tensor) and x._data.dtype.kind == "b")


def _not_bool(a, b, op: str) -> tuple:
    """Promoted operands of an arithmetic op that PyTorch refuses on two bools (NumPy would
    compute it in int8)."""
    if _is_bool(a) and _is_bool(b):
        names = [x.dtype.name if isinstance(x, Tensor) else "Python bool" for x in (a, b)]
        raise TypeError(f"{op}: not supported for bool operands ({names[0]} and {names[1]}); "
                        f"cast to an integer or float dtype first")
    return a, b


@method
def floor_divide(input, other) -> Tensor:
    """Division rounded down (Python's //).

    Example:
        >>> import chainrule
        >>> chainrule.tensor([7, -7]) // 2
        tensor([ 3, -4])
    """
    a, b = _not_bool(*promote(input, other, "floor_divide"), "floor_divide")
    _integer_zero_division(a, b, "floor_divide")
    return P.floor_divide(a, b)


@method
def remainder(input, other) -> Tensor:
    """Python-style modulus (sign of the divisor).

    Example:
        >>> import chainrule
        >>> chainrule.tensor([5, -5]) % 3
        tensor([2, 1])
    """
    a, b = _not_bool(*promote(input, other, "remainder"), "remainder")
    _integer_zero_division(a, b, "remainder")
    return P.remainder(a, b)


def _integer_zero_division(a, b, op: str) -> None:
    """Integer ``//`` and ``%`` by zero raise, as in PyTorch (NumPy returns 0); floats give
    IEEE values. ``a`` and ``b`` are promoted operands: tensors of one dtype or a number."""
    t = a if isinstance(a, Tensor) else b
    if t._data.dtype.kind not in "iu":
        return
    if isinstance(b, Tensor) and bool((b._data == 0).any()):
        where = f"a zero in the divisor of shape {tuple(b.shape)}"
    elif not isinstance(b, Tensor) and b == 0:
        where = "the divisor is 0"
    else:
        return
    raise RuntimeError(f"{op}: ZeroDivisionError: integer division by zero ({t.dtype.name}; "
                       f"{where})")


@method
def pow(input, exponent) -> Tensor:
    """input ** exponent, either may be a tensor.

    Example:
        >>> import chainrule
        >>> chainrule.pow(chainrule.tensor([2.0, 3.0]), 2)
        tensor([4., 9.])
    """
    a, b = promote(input, exponent, "pow")
    if isinstance(exponent, bool) and isinstance(input, Tensor) and _is_bool(a):
        return cast(P.pow_p(a, b), backend.bool_)  # PyTorch: x ** True is x, x ** False ones
    return P.pow_p(*_not_bool(a, b, "pow"))


@method
def neg(input) -> Tensor:
    """-input.

    Example:
        >>> import chainrule
        >>> chainrule.neg(chainrule.tensor([1, -2]))
        tensor([-1,  2])
    """
    return P.neg(_t(input))


negative = method(neg, "negative")


@method
def abs(input) -> Tensor:
    """|input| (gradient sign(x), 0 at 0).

    Example:
        >>> import chainrule
        >>> chainrule.abs(chainrule.tensor([-1.5, 2.0]))
        tensor([1.5000, 2.0000])
    """
    return P.abs_p(_t(input))


def _unary(prim, doc_example):
    def fn(input) -> Tensor:
        return prim(_float_unary(input))

    fn.__name__ = prim.name
    fn.__qualname__ = prim.name
    fn.__doc__ = (f"Elementwise {prim.name}; integer inputs compute in the default float "
                  f"dtype.\n\n    Example:\n        >>> import chainrule\n"
                  f"        >>> {doc_example}\n")
    return method(fn)  # every one is also a Tensor method


exp = _unary(P.exp, "chainrule.exp(chainrule.tensor([0.0]))\n        tensor([1.])")
expm1 = _unary(P.expm1, "chainrule.expm1(chainrule.tensor([0.0]))\n        tensor([0.])")
log = _unary(P.log, "chainrule.log(chainrule.tensor([1.0]))\n        tensor([0.])")
log1p = _unary(P.log1p, "chainrule.log1p(chainrule.tensor([0.0]))\n        tensor([0.])")
sqrt = _unary(P.sqrt, "chainrule.sqrt(chainrule.tensor([4.0]))\n        tensor([2.])")
sin = _unary(P.sin, "chainrule.sin(chainrule.tensor([0.0]))\n        tensor([0.])")
cos = _unary(P.cos, "chainrule.cos(chainrule.tensor([0.0]))\n        tensor([1.])")
tanh = _unary(P.tanh, "chainrule.tanh(chainrule.tensor([0.0]))\n        tensor([0.])")
sigmoid = _unary(P.sigmoid, "chainrule.sigmoid(chainrule.tensor([0.0]))\n        "
                            "tensor([0.5000])")
erf = _unary(P.erf, "chainrule.erf(chainrule.tensor([0.0]))\n        tensor([0.])")


@method
def rsqrt(input) -> Tensor:
    """1 / sqrt(input).

    Example:
        >>> import chainrule
        >>> chainrule.rsqrt(chainrule.tensor([4.0]))
        tensor([0.5000])
    """
    return div(1.0, sqrt(input))


@method
def log2(input) -> Tensor:
    """Base-2 logarithm.

    Example:
        >>> import chainrule
        >>> chainrule.log2(chainrule.tensor([8.0]))
        tensor([3.])
    """
    return log(input) * (1.0 / math.log(2.0))


@method
def square(input) -> Tensor:
    """input * input.

    Example:
        >>> import chainrule
        >>> chainrule.square(chainrule.tensor([3.0]))
        tensor([9.])
    """
    input = _t(input)
    return mul(input, input)


@method
def relu(input) -> Tensor:
    """max(input, 0).

    Example:
        >>> import chainrule
        >>> chainrule.relu(chainrule.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """
    return P.relu(_t(input))


@method
def sign(input) -> Tensor:
    """-1, 0 or 1 (zero gradient).

    Example:
        >>> import chainrule
        >>> chainrule.sign(chainrule.tensor([-2.0, 0.0, 3.0]))
        tensor([-1.,  0.,  1.])
    """
    return P.sign(_t(input))


@method
def floor(input) -> Tensor:
    """Round down (zero gradient).

    Example:
        >>> import chainrule
        >>> chainrule.floor(chainrule.tensor([1.5, -1.5]))
        tensor([ 1., -2.])
    """
    return P.floor(_t(input))


@method
def ceil(input) -> Tensor:
    """Round up (zero gradient).

    Example:
        >>> import chainrule
        >>> chainrule.ceil(chainrule.tensor([1.5]))
        tensor([2.])
    """
    return P.ceil(_t(input))


@method
def round(input, *, decimals: int = 0) -> Tensor:
    """Round half to even, like PyTorch (zero gradient).

    Example:
        >>> import chainrule
        >>> chainrule.round(chainrule.tensor([0.5, 1.5, 2.7]))
        tensor([0., 2., 3.])
    """
    return P.round_p(_t(input), decimals=decimals)


@method
def trunc(input) -> Tensor:
    """Round toward zero.

    Example:
        >>> import chainrule
        >>> chainrule.trunc(chainrule.tensor([-1.5, 1.5]))
        tensor([-1.,  1.])
    """
    input = _t(input)
    return where(input >= 0, floor(input), ceil(input))


@method
def logaddexp(input, other) -> Tensor:
    """log(exp(input) + exp(other)), elementwise with broadcasting, without overflow for large
    inputs; integer inputs compute in the default float dtype.

    Example:
        >>> import chainrule
        >>> chainrule.logaddexp(chainrule.tensor([0.0, 1.0]), chainrule.tensor([0.0, 1.0]))
        tensor([0.6931, 1.6931])
        >>> chainrule.logaddexp(chainrule.tensor([1000.0]), 1000.0)  # exp(1000) overflows
        tensor([1000.6932])
    """
    a, b = float_operands(input, other, "logaddexp")
    return P.logaddexp(a, b)


@method
def maximum(input, other) -> Tensor:
    """Elementwise max (ties split the gradient).

    Example:
        >>> import chainrule
        >>> chainrule.maximum(chainrule.tensor([1, 5]), chainrule.tensor([3, 2]))
        tensor([3, 5])
    """
    return P.maximum(*promote(input, other, "maximum"))


@method
def minimum(input, other) -> Tensor:
    """Elementwise min (ties split the gradient).

    Example:
        >>> import chainrule
        >>> chainrule.minimum(chainrule.tensor([1, 5]), chainrule.tensor([3, 2]))
        tensor([1, 2])
    """
    return P.minimum(*promote(input, other, "minimum"))


@method
def clamp(input, min=None, max=None) -> Tensor:
    """Clip to [min, max] (either may be None or a tensor); gradient 1 inside, 0 outside.

    Example:
        >>> import chainrule
        >>> chainrule.clamp(chainrule.tensor([-2.0, 0.5, 3.0]), -1, 1)
        tensor([-1.0000,  0.5000,  1.0000])
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    x = _t(input)
    if min is not None:
        a, b = promote(x, min, "clamp")
        x = where(a >= b, a, b) if isinstance(b, Tensor) else P.where(a >= b, a, b)
    if max is not None:
        a, b = promote(x, max, "clamp")
        x = where(a <= b, a, b) if isinstance(b, Tensor) else P.where(a <= b, a, b)
    return x


clip = method(clamp, "clip")


def where(condition, input, other) -> Tensor:
    """Pick from ``input`` where ``condition`` is true, else from ``other`` (broadcasting).

    Example:
        >>> import chainrule
        >>> c = chainrule.tensor([True, False])
        >>> chainrule.where(c, chainrule.tensor([1.0, 2.0]), 0.0)
        tensor([1., 0.])
    """
    condition = _t(condition)
    if condition._data.dtype.kind != "b":
        condition = cast(condition, backend.bool_)
    a, b = promote(input, other, "where")
    return P.where(condition, a, b)


def _where_method(input, condition, other) -> Tensor:
    """``x.where(condition, other)``: ``where(condition, x, other)``, as in PyTorch."""
    return where(condition, input, other)


method(_where_method, "where")


# ---------------------------------------------------------------- comparisons and logic
def _compare(prim):
    def fn(input, other) -> Tensor:
        a, b = promote(input, other, prim.name)
        return prim(a, b)

    fn.__name__ = prim.name
    fn.__qualname__ = prim.name
    kind = "bitwise op" if prim.name.startswith("bitwise") else "comparison"
    fn.__doc__ = (f"Elementwise {kind} ``{prim.name}`` (no gradient).\n\n"
                  f"    Example:\n        >>> import chainrule\n"
                  f"        >>> t = chainrule.tensor([True, False])\n"
                  f"        >>> chainrule.{prim.name}(t, True).dtype\n"
                  f"        chainrule.bool\n")
    return method(fn)  # every one is also a Tensor method


eq = _compare(P.eq)
ne = _compare(P.ne)
lt = _compare(P.lt)
le = _compare(P.le)
gt = _compare(P.gt)
ge = _compare(P.ge)
bitwise_and = _compare(P.bitwise_and)
bitwise_or = _compare(P.bitwise_or)
bitwise_xor = _compare(P.bitwise_xor)
logical_and = _compare(P.logical_and)
logical_or = _compare(P.logical_or)
logical_xor = _compare(P.logical_xor)


@method
def logical_not(input) -> Tensor:
    """Elementwise not (bool result).

    Example:
        >>> import chainrule
        >>> chainrule.logical_not(chainrule.tensor([True, False]))
        tensor([False,  True])
    """
    return P.logical_not(_t(input))


@method
def bitwise_not(input) -> Tensor:
    """Bitwise not of an integer tensor (~x).

    Example:
        >>> import chainrule
        >>> ~chainrule.tensor([0, 1])
        tensor([-1, -2])
    """
    return P.bitwise_not(_t(input))


@method
def isnan(input) -> Tensor:
    """True where NaN.

    Example:
        >>> import chainrule
        >>> chainrule.isnan(chainrule.tensor([1.0, float("nan")]))
        tensor([False,  True])
    """
    return P.isnan(_t(input))


@method
def isinf(input) -> Tensor:
    """True where +-inf.

    Example:
        >>> import chainrule
        >>> chainrule.isinf(chainrule.tensor([1.0, float("inf")]))
        tensor([False,  True])
    """
    return P.isinf(_t(input))


@method
def isfinite(input) -> Tensor:
    """True where finite.

    Example:
        >>> import chainrule
        >>> chainrule.isfinite(chainrule.tensor([1.0, float("inf")]))
        tensor([ True, False])
    """
    return P.isfinite(_t(input))


@method
def allclose(input, other, rtol=1e-5, atol=1e-8, equal_nan=False) -> bool:
    """True when all elements are close (NumPy/PyTorch's formula).

    Example:
        >>> import chainrule
        >>> chainrule.allclose(chainrule.ones(2), chainrule.ones(2) + 1e-9)
        True
    """
    a, b = _t(input), _t(other)
    xp = backend.get_array_module(a._data)
    return bool(xp.allclose(a._data, b._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


@method
def equal(input, other) -> bool:
    """True when shapes and all values are equal.

    Example:
        >>> import chainrule
        >>> chainrule.equal(chainrule.ones(2), chainrule.ones(2))
        True
    """
    a, b = _t(input), _t(other)
    return a.shape == b.shape and bool((a._data == b._data).all())


# ---------------------------------------------------------------- copies, casts, devices
def clone(input) -> Tensor:
    """A copy that stays in the graph.

    Example:
        >>> import chainrule
        >>> chainrule.clone(chainrule.ones(2))
        tensor([1., 1.])
    """
    from ..primitives import movement  # noqa: PLC0415

    return movement.copy(_t(input))


def to_device(input: Tensor, device) -> Tensor:
    """Move to ``device`` (recorded: gradients flow back to the source device).

    Example:
        >>> import chainrule
        >>> chainrule.ops.to_device(chainrule.ones(1), "cpu").device
        device(type='cpu')
    """
    device = backend.as_device(device)
    src = input.device
    if src == device:
        return input
    return P.to_device(input, device=device, source=src)
