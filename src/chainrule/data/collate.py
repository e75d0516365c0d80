"""Turning a list of samples into a batch: ``default_collate`` and ``default_convert``.

The rules are PyTorch's: tensors are stacked along a new first dimension, NumPy arrays and
NumPy scalars become stacked tensors, Python floats a float64 tensor, ints an int64 tensor,
bools a bool tensor, strings stay a list, and containers are collated field by field (a dict
of batches for dict samples, a list of batches for tuple or list samples, the same named
tuple for named tuples).

Example:
    >>> import chainrule
    >>> from chainrule.data import default_collate
    >>> batch = default_collate([(chainrule.ones(2), 0), (chainrule.zeros(2), 1)])
    >>> batch[0].shape, batch[1]
    ((2, 2), tensor([0, 1]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import ops
from ..backend import from_numpy_dtype, get_array_module
from ..errors import ShapeError
from ..tensor import Tensor, _wrap, tensor

__all__ = ["default_collate", "default_convert"]

_BAD_KINDS = "SaUOV"  # numpy strings, objects and void records cannot become tensors


def _type_error(elem) -> TypeError:
    return TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, "
                     f"dicts or lists; found {type(elem).__module__}.{type(elem).__name__}")


def _stack_tensors(batch: list) -> Tensor:
    first = batch[0]._data
    dt, shape, kind = first.dtype, first.shape, type(first)
    for t in batch:
        a = t._data
        if t._rg or a.dtype != dt or a.shape != shape or type(a) is not kind:
            return ops.stack(batch)  # graph, promotion and error messages in one place
    xp = get_array_module(first)
    return _wrap(xp.stack([t._data for t in batch]))


def _from_numpy(a: np.ndarray) -> Tensor:
    from_numpy_dtype(a.dtype)  # a clear error for dtypes chainrule does not have
    return _wrap(a)


def _stack_arrays(batch: list) -> Tensor:
    shape = batch[0].shape
    for i, a in enumerate(batch):
        if a.shape != shape:
            raise ShapeError(f"default_collate: numpy arrays in a batch must have equal shapes, "
                             f"got {shape} at entry 0 and {a.shape} at entry {i}")
    return _from_numpy(np.stack(batch))


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def default_collate(batch: Sequence) -> Any:
    """Collate a list of samples into a batch (see the module docstring for the rules).

    Args:
        batch: a non-empty list of samples of the same structure.

    Example:
        >>> import chainrule
        >>> from chainrule.data import default_collate
        >>> out = default_collate([{"x": 1.5, "y": [1, 2]}, {"x": 2.5, "y": [3, 4]}])
        >>> out["x"], out["y"]
        (tensor([1.5000, 2.5000], dtype=chainrule.float64), [tensor([1, 3]), tensor([2, 4])])
    """
    if len(batch) == 0:
        raise ValueError("default_collate: got an empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_tensors(batch)
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in _BAD_KINDS:
            raise _type_error(elem)
        return _stack_arrays(batch)
    if isinstance(elem, np.generic) and not isinstance(elem, (np.str_, np.bytes_)):
        if elem.dtype.kind in _BAD_KINDS:
            raise _type_error(elem)
        return _from_numpy(np.array(batch))
    if isinstance(elem, bool):
        return _wrap(np.array(batch, dtype=np.bool_))
    if isinstance(elem, float):
        return _wrap(np.array(batch, dtype=np.float64))
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        out = {key: default_collate([d[key] for d in batch]) for key in elem}
        if type(elem) is dict:
            return out
        try:
            return type(elem)(out)
        except TypeError:
            return out
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of "
                               f"equal size, got sizes {sorted({len(e) for e in batch})}")
        return [default_collate(list(s)) for s in zip(*batch)]
    raise _type_error(elem)


def default_convert(data: Any) -> Any:
    """Convert one sample without batching (DataLoader with ``batch_size=None``): NumPy arrays
    and scalars become tensors, containers are converted element by element, anything else
    is returned as it is.

    Example:
        >>> import numpy as np
        >>> from chainrule.data import default_convert
        >>> default_convert({"a": np.arange(2), "b": "text"})
        {'a': tensor([0, 1]), 'b': 'text'}
    """
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in _BAD_KINDS else _from_numpy(data)
    if isinstance(data, np.generic) and not isinstance(data, (np.str_, np.bytes_)):
        return data if data.dtype.kind in _BAD_KINDS else _from_numpy(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, Mapping):
        out = {k: default_convert(v) for k, v in data.items()}
        if type(data) is dict:
            return out
        try:
            return type(data)(out)
        except TypeError:
            return out
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, list):
        return [default_convert(d) for d in data]
    return data
