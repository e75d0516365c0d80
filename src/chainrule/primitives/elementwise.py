"""Elementwise primitives: unary, binary, comparisons, where, cast.

Each block: forward impl, then one vjp and one jvp rule per input (see core.py for the rule
language). Binary rules may return broadcast-shaped cotangents; the engine sums them back.
"""

from __future__ import annotations

import math

from ..backend.avals import ufunc_dtype
from .core import Primitive
from .shapes import elementwise, promoted, same_dtype

# ---------------------------------------------------------------- unary, rules from x
neg = Primitive(
    "neg", lambda xp, x: xp.negative(x),
    vjp=[lambda F, g, x, out: -g],
    jvp=[lambda F, t, x, out: -t], kind="elementwise",
    shape=elementwise("negative"))

exp = Primitive(
    "exp", lambda xp, x: xp.exp(x), save="out",
    vjp=[lambda F, g, x, out: g * out],
    jvp=[lambda F, t, x, out: t * out], kind="elementwise")

expm1 = Primitive(
    "expm1", lambda xp, x: xp.expm1(x), save="out",
    vjp=[lambda F, g, x, out: g * (out + 1)],
    jvp=[lambda F, t, x, out: t * (out + 1)], kind="elementwise")

log = Primitive(
    "log", lambda xp, x: xp.log(x), save="in",
    vjp=[lambda F, g, x, out: g / x],
    jvp=[lambda F, t, x, out: t / x], kind="elementwise")

log1p = Primitive(
    "log1p", lambda xp, x: xp.log1p(x), save="in",
    vjp=[lambda F, g, x, out: g / (x + 1)],
    jvp=[lambda F, t, x, out: t / (x + 1)], kind="elementwise")

sqrt = Primitive(
    "sqrt", lambda xp, x: xp.sqrt(x), save="out",
    vjp=[lambda F, g, x, out: g / (2 * out)],
    jvp=[lambda F, t, x, out: t / (2 * out)], kind="elementwise")

sin = Primitive(
    "sin", lambda xp, x: xp.sin(x), save="in",
    vjp=[lambda F, g, x, out: g * F.cos(x)],
    jvp=[lambda F, t, x, out: t * F.cos(x)], kind="elementwise")

cos = Primitive(
    "cos", lambda xp, x: xp.cos(x), save="in",
    vjp=[lambda F, g, x, out: -g * F.sin(x)],
    jvp=[lambda F, t, x, out: -t * F.sin(x)], kind="elementwise")

tanh = Primitive(
    "tanh", lambda xp, x: xp.tanh(x), save="out",
    vjp=[lambda F, g, x, out: g * (1 - out * out)],
    jvp=[lambda F, t, x, out: t * (1 - out * out)], kind="elementwise")


def _sigmoid(xp, x):
    # stable for large |x|: exp of a non-positive number only
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


sigmoid = Primitive(
    "sigmoid", _sigmoid, save="out",
    vjp=[lambda F, g, x, out: g * (out * (1 - out))],
    jvp=[lambda F, t, x, out: t * (out * (1 - out))], kind="elementwise",
    shape=elementwise(None, same_dtype()))

relu = Primitive(
    "relu", lambda xp, x: xp.maximum(x, 0).astype(x.dtype, copy=False), save="out",
    vjp=[lambda F, g, x, out: g * (out > 0)],
    jvp=[lambda F, t, x, out: F.where(out > 0, t, 0)], kind="elementwise",
    shape=elementwise(None, same_dtype()))

abs_p = Primitive(
    "abs", lambda xp, x: xp.abs(x), save="in",
    vjp=[lambda F, g, x, out: g * F.sign(x)],
    jvp=[lambda F, t, x, out: t * F.sign(x)], kind="elementwise",
    shape=elementwise("absolute"))


def _erf(xp, x):
    from ..backend.special import erf  # noqa: PLC0415

    return erf(xp, x)


erf = Primitive(
    "erf", _erf, save="in",
    vjp=[lambda F, g, x, out: g * (2 / math.sqrt(math.pi)) * F.exp(-(x * x))],
    jvp=[lambda F, t, x, out: t * (2 / math.sqrt(math.pi)) * F.exp(-(x * x))], kind="elementwise",
    shape=elementwise(None, lambda x: ufunc_dtype("exp", x.dtype)))

# piecewise-constant: zero derivative everywhere it exists (as in PyTorch)
_zero_vjp = [lambda F, g, x, out: g * 0]
sign = Primitive("sign", lambda xp, x: xp.sign(x), vjp=_zero_vjp, jvp=_zero_vjp, kind="elementwise")
floor = Primitive("floor", lambda xp, x: xp.floor(x), vjp=_zero_vjp, jvp=_zero_vjp,
                  kind="elementwise")
ceil = Primitive("ceil", lambda xp, x: xp.ceil(x), vjp=_zero_vjp, jvp=_zero_vjp, kind="elementwise")
round_p = Primitive("round", lambda xp, x, decimals=0: xp.round(x, decimals),
                   vjp=[lambda F, g, x, out, decimals: g * 0],
                   jvp=[lambda F, t, x, out, decimals: t * 0], kind="elementwise",
    shape=elementwise(None, same_dtype()))

# ---------------------------------------------------------------- binary
add = Primitive(
    "add", lambda xp, x, y: x + y,
    vjp=[lambda F, g, x, y, out: g, lambda F, g, x, y, out: g],
    jvp=[lambda F, t, x, y, out: t, lambda F, t, x, y, out: t], kind="elementwise")

sub = Primitive(
    "sub", lambda xp, x, y: x - y,
    vjp=[lambda F, g, x, y, out: g, lambda F, g, x, y, out: -g],
    jvp=[lambda F, t, x, y, out: t, lambda F, t, x, y, out: -t], kind="elementwise",
    shape=elementwise("subtract"))

mul = Primitive(
    "mul", lambda xp, x, y: x * y, save="in", reads=((1,), (0,)),
    vjp=[lambda F, g, x, y, out: g * y, lambda F, g, x, y, out: g * x],
    jvp=[lambda F, t, x, y, out: t * y, lambda F, t, x, y, out: x * t], kind="elementwise",
    shape=elementwise("multiply"))

div = Primitive(
    "div", lambda xp, x, y: x / y, save="in", reads=((1,), (0, 1)),
    vjp=[lambda F, g, x, y, out: g / y, lambda F, g, x, y, out: -g * x / (y * y)],
    jvp=[lambda F, t, x, y, out: t / y, lambda F, t, x, y, out: -t * x / (y * y)],
    kind="elementwise",
    shape=elementwise("true_divide"))


def _pow_dy(F, g, x, y, out):
    # d(x**y)/dy = x**y * log(x); defined as 0 where x == 0 (PyTorch does the same)
    safe = F.where(x > 0, x, 1)
    return F.where(x > 0, g * (x ** y) * F.log(safe), g * 0)


def _pow_dx(F, g, x, y, out):
    # d(x**y)/dx = y * x**(y-1); 0 where y == 0, even at x == 0 (PyTorch does the same)
    if isinstance(y, (int, float)):
        return g * y * x ** (y - 1) if y != 0 else g * 0
    return g * y * F.where(y == 0, 1, x) ** (y - 1)


pow_p = Primitive(
    "pow", lambda xp, x, y: x ** y, save="in",
    vjp=[_pow_dx, _pow_dy],
    jvp=[_pow_dx, _pow_dy], kind="elementwise",
    shape=elementwise("power"))

logaddexp = Primitive(
    "logaddexp", lambda xp, x, y: xp.logaddexp(x, y), save="in,out", kind="elementwise",
    # d log(e^x + e^y) / dx = e^(x - out): the softmax weight of x, never above 1
    vjp=[lambda F, g, x, y, out: g * F.exp(x - out), lambda F, g, x, y, out: g * F.exp(y - out)],
    jvp=[lambda F, t, x, y, out: t * F.exp(x - out), lambda F, t, x, y, out: t * F.exp(y - out)])

maximum = Primitive(
    "maximum", lambda xp, x, y: xp.maximum(x, y), save="in",
    # ties split the gradient evenly, as PyTorch does
    vjp=[lambda F, g, x, y, out: g * ((x > y) + (x == y) * 0.5),
         lambda F, g, x, y, out: g * ((y > x) + (x == y) * 0.5)],
    jvp=[lambda F, t, x, y, out: t * ((x > y) + (x == y) * 0.5),
         lambda F, t, x, y, out: t * ((y > x) + (x == y) * 0.5)], kind="elementwise")

minimum = Primitive(
    "minimum", lambda xp, x, y: xp.minimum(x, y), save="in",
    vjp=[lambda F, g, x, y, out: g * ((x < y) + (x == y) * 0.5),
         lambda F, g, x, y, out: g * ((y < x) + (x == y) * 0.5)],
    jvp=[lambda F, t, x, y, out: t * ((x < y) + (x == y) * 0.5),
         lambda F, t, x, y, out: t * ((y < x) + (x == y) * 0.5)], kind="elementwise")

remainder = Primitive(
    "remainder", lambda xp, x, y: xp.remainder(x, y), save="in",
    vjp=[lambda F, g, x, y, out: g, lambda F, g, x, y, out: -g * F.floor(x / y)],
    jvp=[lambda F, t, x, y, out: t, lambda F, t, x, y, out: -t * F.floor(x / y)],
    kind="elementwise")

floor_divide = Primitive(
    "floor_divide", lambda xp, x, y: xp.floor_divide(x, y),
    vjp=[lambda F, g, x, y, out: g * 0, lambda F, g, x, y, out: g * 0],
    jvp=[lambda F, t, x, y, out: t * 0, lambda F, t, x, y, out: t * 0], kind="elementwise")

where = Primitive(
    "where", lambda xp, c, x, y: xp.where(c, x, y), save="in", reads=((), (0,), (0,)),
    vjp=[None,
         lambda F, g, c, x, y, out: F.where(c, g, 0),
         lambda F, g, c, x, y, out: F.where(c, 0, g)],
    jvp=[None,
         lambda F, t, c, x, y, out: F.where(c, t, 0),
         lambda F, t, c, x, y, out: F.where(c, 0, t)], kind="elementwise",
    shape=elementwise(None, lambda c, x, y: promoted(x, y)))

# ---------------------------------------------------------------- not differentiable
_nd2 = [None, None]
eq = Primitive("eq", lambda xp, x, y: x == y, vjp=_nd2, differentiable=False, kind="elementwise",
    shape=elementwise("equal"))
ne = Primitive("ne", lambda xp, x, y: x != y, vjp=_nd2, differentiable=False, kind="elementwise",
    shape=elementwise("not_equal"))
lt = Primitive("lt", lambda xp, x, y: x < y, vjp=_nd2, differentiable=False, kind="elementwise",
    shape=elementwise("less"))
le = Primitive("le", lambda xp, x, y: x <= y, vjp=_nd2, differentiable=False, kind="elementwise",
    shape=elementwise("less_equal"))
gt = Primitive("gt", lambda xp, x, y: x > y, vjp=_nd2, differentiable=False, kind="elementwise",
    shape=elementwise("greater"))
ge = Primitive("ge", lambda xp, x, y: x >= y, vjp=_nd2, differentiable=False, kind="elementwise",
    shape=elementwise("greater_equal"))
logical_and = Primitive("logical_and", lambda xp, x, y: xp.logical_and(x, y), vjp=_nd2,
                        differentiable=False, kind="elementwise")
logical_or = Primitive("logical_or", lambda xp, x, y: xp.logical_or(x, y), vjp=_nd2,
                       differentiable=False, kind="elementwise")
logical_xor = Primitive("logical_xor", lambda xp, x, y: xp.logical_xor(x, y), vjp=_nd2,
                        differentiable=False, kind="elementwise")
logical_not = Primitive("logical_not", lambda xp, x: xp.logical_not(x), vjp=[None],
                        differentiable=False, kind="elementwise")
bitwise_and = Primitive("bitwise_and", lambda xp, x, y: xp.bitwise_and(x, y), vjp=_nd2,
                        differentiable=False, kind="elementwise")
bitwise_or = Primitive("bitwise_or", lambda xp, x, y: xp.bitwise_or(x, y), vjp=_nd2,
                       differentiable=False, kind="elementwise")
bitwise_xor = Primitive("bitwise_xor", lambda xp, x, y: xp.bitwise_xor(x, y), vjp=_nd2,
                        differentiable=False, kind="elementwise")
bitwise_not = Primitive("bitwise_not", lambda xp, x: xp.invert(x), vjp=[None],
                        differentiable=False, kind="elementwise",
    shape=elementwise("invert"))
isnan = Primitive("isnan", lambda xp, x: xp.isnan(x), vjp=[None], differentiable=False,
                  kind="elementwise")
isinf = Primitive("isinf", lambda xp, x: xp.isinf(x), vjp=[None], differentiable=False,
                  kind="elementwise")
isfinite = Primitive("isfinite", lambda xp, x: xp.isfinite(x), vjp=[None], differentiable=False,
                     kind="elementwise")

# ---------------------------------------------------------------- dtype and device


def _cast_impl(xp, x, dtype):
    return x.astype(dtype.np, copy=False) if hasattr(x, "astype") else xp.asarray(x, dtype.np)


cast = Primitive(
    "cast", _cast_impl,
    # the engine casts each cotangent back to its input's dtype
    vjp=[lambda F, g, x, out, dtype: g],
    jvp=[lambda F, t, x, out, dtype: F.cast(t, dtype=dtype)], kind="elementwise",
    shape=elementwise(None, lambda x, dtype: dtype))


def _to_device_impl(xp, x, device, source):
    from ..backend import to_device  # noqa: PLC0415

    return to_device(x, device)


to_device = Primitive(
    "to_device", _to_device_impl,
    vjp=[lambda F, g, x, out, device, source: F.to_device(g, device=source, source=device)],
    jvp=[lambda F, t, x, out, device, source: F.to_device(t, device=device, source=source)],
    kind="elementwise",
    shape=elementwise(None, same_dtype()))


zeros_like = Primitive("zeros_like", lambda xp, x: xp.zeros_like(x), vjp=[None],
                       differentiable=False, kind="elementwise",
    shape=elementwise(None, same_dtype()))
