"""Argument normalisation shared by the ops: dims, sizes, scalars and promotion."""

from __future__ import annotations

import functools
import numbers

import numpy as np

from .. import backend
from ..backend import as_dtype, from_numpy_dtype, result_type
from ..primitives import elementwise as P
from ..tensor import Tensor, tensor

_SCALARS = (int, float, bool)


def method(fn, name: str | None = None):
    """Mark an op as also a Tensor method (``x.exp()`` for ``exp(x)``), as PyTorch offers it;
    ``name`` for an alias (``clip``). The op's first argument becomes ``self``.

    Example:
        >>> import chainrule
        >>> chainrule.Tensor.exp is chainrule.exp
        True
    """
    setattr(Tensor, name or fn.__name__, fn)
    return fn


def float32_inside(fn):
    """A composite op computed in float32 when its float tensor arguments are all float16 (or
    all bfloat16), the result rounded back once: PyTorch's CPU kernels for these ops (losses,
    norms, softplus...) compute in float32 too, and 16-bit intermediates would overflow
    (exp(17) in float16) or lose digits. Other dtypes go straight through.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> x = chainrule.tensor([1.7]).half()
        >>> F.softplus(x, beta=10.0)  # exp(17) overflows float16, not float32
        tensor([1.7002], dtype=chainrule.float16)
    """

    def run(*args, **kwargs):
        low = None
        for a in (*args, *kwargs.values()):
            if type(a) is Tensor or isinstance(a, Tensor):
                d = a._data.dtype
                if d.kind not in "fV":
                    continue
                if d.itemsize != 2 or (low is not None and d != low):
                    return fn(*args, **kwargs)
                low = d
        if low is None:
            return fn(*args, **kwargs)
        f32 = backend.float32
        up = [cast(a, f32) if isinstance(a, Tensor) and a._data.dtype == low else a
              for a in args]
        kup = {k: cast(v, f32) if isinstance(v, Tensor) and v._data.dtype == low else v
               for k, v in kwargs.items()}
        out = fn(*up, **kup)
        back = from_numpy_dtype(low)
        if isinstance(out, tuple):
            return type(out)(*(_cast_back(o, back) for o in out)) if hasattr(out, "_fields") \
                else tuple(_cast_back(o, back) for o in out)
        return _cast_back(out, back)

    return functools.update_wrapper(run, fn)


def _cast_back(t, low):
    if isinstance(t, Tensor) and t._data.dtype == backend.float32.np:
        return cast(t, low)
    return t


def normalize_dim(dim, ndim: int, op: str) -> int:
    """A non-negative axis; IndexError naming the op and the valid range otherwise."""
    if isinstance(dim, Tensor):
        dim = int(dim)
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of "
                         f"[{-n}, {n - 1}], but got {dim})")
    return dim % n if ndim else 0


def normalize_dims(dim, ndim: int, op: str):
    """None (all axes) or a sorted tuple of distinct non-negative axes."""
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        axes = tuple(normalize_dim(d, ndim, op) for d in dim)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{op}: dim {tuple(dim)} names an axis twice")
        if not ndim:
            return ()
        return tuple(sorted(axes))
    axis = normalize_dim(dim, ndim, op)
    return (axis,) if ndim else ()


def size_args(size, op: str) -> tuple:
    """Accept f(2, 3), f((2, 3)) and f([2, 3])."""
    if len(size) == 1 and isinstance(size[0], (list, tuple)):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, numbers.Integral):
            raise TypeError(f"{op}: sizes must be ints, got {s!r}")
        out.append(int(s))
    return tuple(out)


def to_tensor_like(x, like: Tensor | None = None) -> Tensor:
    """Turn arrays, NumPy scalars and lists into a tensor on ``like``'s device."""
    if isinstance(x, Tensor):
        return x
    device = like.device if like is not None else None
    if isinstance(x, np.generic):
        return tensor(x.item(), device=device) if x.dtype.kind not in "fV" else \
            tensor(np.asarray(x), device=device)
    return tensor(x, device=device)


def is_scalar(x) -> bool:
    """Python bool/int/float (NumPy scalars included)."""
    return isinstance(x, _SCALARS) or (isinstance(x, np.generic) and x.dtype.kind in "biufV")


def as_py_scalar(x):
    """NumPy scalars to Python numbers; others unchanged."""
    return x.item() if isinstance(x, np.generic) else x


def cast(x: Tensor, dtype) -> Tensor:
    """Cast (recorded, differentiable for float targets); self when already that dtype."""
    dtype = as_dtype(dtype)
    if x._data.dtype == dtype.np:
        return x
    return P.cast(x, dtype=dtype)


def promote(a, b, op: str):
    """PyTorch type promotion for a binary op; returns operands ready for the primitive.

    Python scalars stay Python scalars (weak), after the tensor is cast to the result type.
    """
    tb = type(b)
    if tb is float or tb is int:  # fast path: float tensor op Python number
        if type(a) is Tensor and a._data.dtype.kind in "fV":
            return a, b
    ta = isinstance(a, Tensor)
    tb = isinstance(b, Tensor)
    if ta and tb:
        da, db = a._data.dtype, b._data.dtype
        if da == db:
            return a, b
        rt = result_type((from_numpy_dtype(da), a._data.ndim), (from_numpy_dtype(db), b._data.ndim))
        return cast(a, rt), cast(b, rt)
    if not ta and not tb:
        if is_scalar(a) and is_scalar(b):
            a = tensor(as_py_scalar(a))
            return promote(a, b, op)
        if is_scalar(a):
            return promote(a, to_tensor_like(b), op)
        return promote(to_tensor_like(a), b, op)
    t, s = (a, b) if ta else (b, a)
    if not is_scalar(s):
        s = to_tensor_like(s, t)
        return promote(a if ta else s, s if ta else b, op)
    s = as_py_scalar(s)
    kind = t._data.dtype.kind
    if isinstance(s, bool):
        pass
    elif isinstance(s, int):
        if kind == "b":
            t = cast(t, backend.int64)
    elif kind not in "fV":
        t = cast(t, backend.default_float())
    elif kind == "V" and not ta:  # NumPy ranks a leading Python float above bfloat16
        s = t._data.dtype.type(s)
    return (t, s) if ta else (s, t)


def float_operands(a, b, op: str):
    """Promote, then make sure the result is floating (true division)."""
    a, b = promote(a, b, op)
    for x in (a, b):
        if isinstance(x, Tensor):
            if x._data.dtype.kind not in "fV":
                f = backend.default_float()
                a = cast(a, f) if isinstance(a, Tensor) else a
                b = cast(b, f) if isinstance(b, Tensor) else b
            break
    return a, b


def _ntuple(value, n: int, name: str, op: str, minimum: int) -> tuple:
    """``value`` (an int or a sequence of n ints) as an n-tuple of ints >= minimum."""
    t = type(value)
    if t is int:  # the fast paths (ABC isinstance checks cost microseconds per call)
        vals = (value,) * n
    elif (t is tuple or t is list) and len(value) == n and all(type(v) is int for v in value):
        vals = tuple(value)
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        vals = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        vals = tuple(int(v) for v in value)
    elif isinstance(value, (tuple, list)) and len(value) == 1 and n > 1 and isinstance(
            value[0], numbers.Integral):
        vals = (int(value[0]),) * n
    else:
        raise TypeError(f"{op}: {name} must be an int or a sequence of {n} ints, got {value!r}")
    if min(vals) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return vals
