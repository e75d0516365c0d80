"""The ``tensor()`` factory: a leaf tensor from data, with PyTorch's dtype inference.

Example:
    >>> import chainrule
    >>> chainrule.tensor([1, 2]).dtype
    chainrule.int64
"""

from __future__ import annotations

import numpy as np

from . import backend
from .backend import as_device, as_dtype, device_of, from_numpy_dtype
from .tensor import Tensor, _wrap


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Make a leaf tensor from data (nested lists, scalars, NumPy arrays, tensors); copies.

    Python floats become float32 (the default dtype), ints int64, bools bool.

    Example:
        >>> import chainrule
        >>> chainrule.tensor([1.5, 2.0], dtype=chainrule.float64, requires_grad=True)
        tensor([1.5000, 2.0000], dtype=chainrule.float64, requires_grad=True)
    """
    dev = as_device(device) if device is not None else None
    if isinstance(data, Tensor):
        arr = data._data
        if dev is None:
            dev = device_of(arr)
        arr = backend.to_device(arr, dev)
        xp = backend.get_array_module(arr)
        arr = xp.array(arr, dtype=as_dtype(dtype).np if dtype is not None else None, copy=True)
    else:
        dev = dev or backend.CPU
        xp = dev.xp
        if dtype is not None:
            npd = as_dtype(dtype).np
        else:
            npd = _infer_dtype(data)
        if backend.is_array(data):
            arr = backend.to_device(data, dev)
            arr = xp.array(arr, dtype=npd, copy=True)
        else:
            host = np.array(data, dtype=npd)
            if host.dtype == object:
                raise TypeError(f"tensor(): could not make a numeric tensor from {type(data)}")
            arr = host if dev.type == "cpu" else backend.to_device(host, dev)
    from_numpy_dtype(arr.dtype)  # refuse unsupported dtypes
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data):
    """dtype for data without an explicit dtype: arrays keep theirs (float64 stays float64);
    Python floats take the default float, ints int64, bools bool."""
    if backend.is_array(data) or isinstance(data, np.generic):
        d = data.dtype
        if d.kind in "biufV":
            return d
        raise TypeError(f"tensor(): unsupported array dtype {d}")
    if isinstance(data, (list, tuple)):
        probe = np.asarray(_first_leaves(data), dtype=object) if data else np.array([])
        kinds = set()
        for v in probe.ravel():
            if isinstance(v, Tensor):
                kinds.add(v._data.dtype.kind)
            elif isinstance(v, bool) or isinstance(v, np.bool_):
                kinds.add("b")
            elif isinstance(v, (int, np.integer)):
                kinds.add("i")
            else:
                kinds.add("f")
        if not kinds:
            return backend.default_float().np
        if "f" in kinds:
            return backend.default_float().np
        if "i" in kinds or "u" in kinds:
            return np.int64
        return np.bool_
    if isinstance(data, bool):
        return np.bool_
    if isinstance(data, int):
        return np.int64
    if isinstance(data, float):
        return backend.default_float().np
    return None


def _first_leaves(data, limit=10000):
    out = []
    stack = [data]
    while stack and len(out) < limit:
        x = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend(x)
        else:
            out.append(x)
    return out
