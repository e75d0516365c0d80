"""Building blocks of the shape rules (abstract evaluation): broadcasting, reduced shapes,
NumPy indexing, and the default rule of elementwise primitives.

A shape rule maps the inputs' :class:`~chainrule.primitives.core.Aval` (Python scalars and
None as they are) and the params to the output's Aval, computing nothing; inputs that do not
fit raise :class:`~chainrule.errors.ShapeError` naming the primitive and the shapes.

Example:
    >>> from chainrule.primitives.core import Aval
    >>> elementwise("add")(Aval((2, 1), "float32"), Aval((3,), "float32"))
    Aval(shape=(2, 3), dtype=float32)
"""

from __future__ import annotations

import math
import numbers

from ..backend.avals import as_np_dtype, result_dtype, ufunc_dtype
from ..errors import ShapeError
from .core import Aval


def shape_of(x) -> tuple:
    """The shape of an Aval, () for a Python scalar."""
    return tuple(x.shape) if isinstance(x, Aval) else ()


def dtype_of(x):
    """The dtype of an Aval, or a Python scalar itself (a weak operand of type rules)."""
    return x.dtype if isinstance(x, Aval) else x


def broadcast(op: str, *shapes) -> tuple:
    """NumPy's broadcast of ``shapes``; ShapeError naming ``op`` and the shapes otherwise."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(-ndim, 0):
        n = 1
        for s in shapes:
            m = s[i] if -i <= len(s) else 1
            if m != 1:
                if n != 1 and m != n:
                    raise ShapeError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)}"
                                     " cannot be broadcast together")
                n = m
        out.append(n)
    return tuple(out)


def elementwise(ufunc: str | None, dtype=None):
    """The rule of an elementwise primitive: the broadcast shape of the array inputs, and
    the dtype of NumPy's ufunc ``ufunc`` on them (or ``dtype(*inputs, **params)``)."""
    def rule(*xs, **params):
        arrays = [x for x in xs if isinstance(x, Aval)]
        shape = broadcast(ufunc or "elementwise", *[x.shape for x in arrays])
        if dtype is not None:
            return Aval(shape, as_np_dtype(dtype(*xs, **params)))
        return Aval(shape, ufunc_dtype(ufunc, *[dtype_of(x) for x in xs]))

    return rule


def like_input(x, *rest, **params) -> Aval:
    """The rule of a primitive whose output has its first input's shape and dtype."""
    return Aval(tuple(x.shape), x.dtype)


def same_dtype(i: int = 0):
    """A dtype rule: the dtype of input ``i``."""
    return lambda *xs, **params: xs[i].dtype


def promoted(*xs, **params):
    """A dtype rule: ``result_type`` of the inputs (Python scalars weak, None skipped)."""
    return result_dtype(*[dtype_of(x) for x in xs if x is not None])


def reduced(shape: tuple, axes, keepdims: bool) -> tuple:
    """``shape`` with ``axes`` (None: all) removed, or kept as 1 with ``keepdims``."""
    if axes is None:
        axes = range(len(shape))
    axes = {a % len(shape) for a in axes} if shape else set()
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def reshaped(op: str, shape: tuple, new: tuple) -> tuple:
    """``new`` with a -1 resolved; ShapeError when the sizes differ."""
    size = math.prod(shape)
    new = tuple(new)
    if -1 in new:
        rest = math.prod(n for n in new if n != -1)
        if rest == 0 or size % rest:
            raise ShapeError(f"{op}: cannot reshape {shape} into {new}")
        new = tuple(size // rest if n == -1 else n for n in new)
    if math.prod(new) != size:
        raise ShapeError(f"{op}: cannot reshape {shape} ({size} elements) into {new}")
    return new


def _is_int(i) -> bool:
    return isinstance(i, numbers.Integral) and not isinstance(i, bool)


def indexed(op: str, shape: tuple, index) -> tuple:
    """The shape of ``x[index]`` for ``x`` of ``shape`` under NumPy's rules: ints, slices,
    None, Ellipsis, integer arrays and boolean arrays (whose result length depends on their
    values: a boolean array must be given as its array, not an Aval)."""
    if not isinstance(index, tuple):
        index = (index,)
    used = sum(getattr(i, "ndim", 1) if _is_bool_array(i) else
               (0 if i is None or i is Ellipsis else 1) for i in index)
    if used > len(shape):
        raise ShapeError(f"{op}: too many indices ({used}) for a tensor of shape {shape}")
    if Ellipsis in [i for i in index if not hasattr(i, "shape")]:
        k = next(j for j, i in enumerate(index) if i is Ellipsis and not hasattr(i, "shape"))
        index = index[:k] + (slice(None),) * (len(shape) - used) + index[k + 1:]
    else:
        index = index + (slice(None),) * (len(shape) - used)
    out, adv, adv_pos, dim = [], [], [], 0
    for i in index:
        if i is None:
            out.append(1)
        elif isinstance(i, slice):
            out.append(len(range(*i.indices(shape[dim]))))
            dim += 1
        elif _is_int(i) or hasattr(i, "shape"):
            if _is_bool_array(i):
                n = int(i.sum())
                adv.append((n,))
                dim += i.ndim
            else:
                if _is_int(i) and not -shape[dim] <= i < shape[dim]:
                    raise IndexError(f"{op}: index {i} is out of bounds for axis {dim} with "
                                     f"size {shape[dim]}")
                adv.append(tuple(getattr(i, "shape", ())))
                dim += 1
            adv_pos.append(len(out))
            out.append(None)  # placeholder of an advanced index
        else:
            raise TypeError(f"{op}: unsupported index {i!r}")
    if not any(hasattr(i, "shape") for i in index):  # basic indexing: ints drop their axis
        return tuple(n for n in out if n is not None)
    bshape = broadcast(op, *adv)
    rest = [n for n in out if n is not None]
    if adv_pos == list(range(adv_pos[0], adv_pos[0] + len(adv_pos))):  # adjacent
        before = len([n for n in out[:adv_pos[0]] if n is not None])
        return tuple(rest[:before]) + bshape + tuple(rest[before:])
    return bshape + tuple(rest)


def _is_bool_array(i) -> bool:
    return hasattr(i, "dtype") and getattr(i.dtype, "kind", "") == "b" and hasattr(i, "shape")
