"""Dtype resolution without data, for the primitives' shape rules: NumPy's own type rules
(a ufunc's loop resolution, ``result_type`` with Python numbers as weak scalars), so that an
abstract result has exactly the dtype that the impl produces.

Example:
    >>> import numpy as np
    >>> ufunc_dtype("exp", np.dtype("int8")), ufunc_dtype("add", np.dtype("float32"), 2.0)
    (dtype('float16'), dtype('float32'))
"""

from __future__ import annotations

import numpy as np

BOOL = np.dtype(np.bool_)
INDEX = np.dtype(np.intp)  # what argmax and friends return


def _operand(x):
    """A dtype, or the weak Python type of a number (``bool`` is not weak in NumPy)."""
    if isinstance(x, bool):
        return BOOL
    if isinstance(x, (int, float, complex)):
        return type(x)
    return np.dtype(x)


def ufunc_dtype(name: str, *operands):
    """The output dtype of NumPy's ufunc ``name`` on operands of these dtypes / scalars."""
    return getattr(np, name).resolve_dtypes(tuple(_operand(x) for x in operands) + (None,))[-1]


def result_dtype(*operands):
    """``numpy.result_type`` of dtypes and Python numbers (weak)."""
    return np.result_type(*[x if isinstance(x, (bool, int, float, complex)) else np.dtype(x)
                            for x in operands])


def sum_dtype(dtype):
    """The dtype of a sum, product or cumulative sum (small integers and bools widen to the
    platform integer, as NumPy's ``add.reduce`` does)."""
    d = np.dtype(dtype)
    if d.kind in "bi" and d.itemsize < np.dtype(np.int_).itemsize:
        return np.dtype(np.int_)
    if d.kind == "u" and d.itemsize < np.dtype(np.uint).itemsize:
        return np.dtype(np.uint)
    return d


def index_dtype(n: int):
    """The smallest of int8 and int32 that holds offsets 0..n-1 (max pooling's indices)."""
    return np.dtype(np.int8 if n <= 127 else np.int32)


def as_np_dtype(d):
    """A NumPy dtype from a chainrule DType (``.np``) or anything NumPy accepts."""
    return np.dtype(getattr(d, "np", d))
