"""Sorting and selection: sort, argsort, topk, kthvalue.

The order is found on the raw array (it has no gradient); the values are then gathered from
the input at those indices, so the gradient flows back to exactly the selected entries (as in
PyTorch) and every order of derivative comes from ``gather``.

Example:
    >>> import chainrule
    >>> chainrule.topk(chainrule.tensor([1.0, 5.0, 3.0]), 2)
    torch_return_types.topk(values=tensor([5., 3.]), indices=tensor([1, 2]))
"""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor, _wrap
from ._util import method, normalize_dim
from .elementwise import _t
from .reduce import _MaxMin
from .shape import gather, getitem


class _Sort(_MaxMin):  # (values, indices) with torch_return_types' repr
    _op = "sort"


class _TopK(_Sort):
    _op = "topk"


class _KthValue(_Sort):
    _op = "kthvalue"


def _order(a, axis: int, descending: bool, xp):
    """Stable argsort along ``axis``; descending keeps equal elements in their original
    order (NaN counts as the largest value either way, as in PyTorch)."""
    if not descending:
        return xp.argsort(a, axis=axis, kind="stable")
    n = a.shape[axis]
    rev = xp.argsort(xp.flip(a, axis), axis=axis, kind="stable")
    return (n - 1) - xp.flip(rev, axis)


def _sort_input(input, dim, op):
    x = _t(input)
    if x._data.dtype.kind not in "biufV":  # V: bfloat16
        raise TypeError(f"{op}: unsupported dtype {x.dtype.name}")
    if x._data.ndim == 0:
        return x, 0
    return x, normalize_dim(dim, x._data.ndim, op)


@method
def argsort(input, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """Indices that sort ``input`` along ``dim`` (always stable here).

    Example:
        >>> import chainrule
        >>> chainrule.argsort(chainrule.tensor([3.0, 1.0, 2.0]))
        tensor([1, 2, 0])
    """
    x, d = _sort_input(input, dim, "argsort")
    if x._data.ndim == 0:
        return _wrap(backend.get_array_module(x._data).zeros((), dtype="int64"))
    xp = backend.get_array_module(x._data)
    return _wrap(_order(x._data, d, descending, xp).astype("int64", copy=False))


@method
def sort(input, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) sorted along ``dim``; the gradient flows to the sorted entries.

    Example:
        >>> import chainrule
        >>> chainrule.sort(chainrule.tensor([3.0, 1.0, 2.0]), descending=True).values
        tensor([3., 2., 1.])
    """
    x, d = _sort_input(input, dim, "sort")
    idx = argsort(x, d, descending)
    if x._data.ndim == 0:
        return _Sort(x * 1 if x.dtype.is_floating_point else x, idx)
    return _Sort(gather(x, d, idx), idx)


@method
def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The ``k`` largest (or smallest) entries along ``dim`` and their indices; the result is
    always sorted (PyTorch leaves the order unspecified for ``sorted=False``).

    Example:
        >>> import chainrule
        >>> chainrule.topk(chainrule.tensor([[1.0, 4.0, 2.0]]), 1, largest=False).indices
        tensor([[0]])
    """
    x, d = _sort_input(input, dim, "topk")
    n = x._data.shape[d] if x._data.ndim else 1
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n:
        raise IndexError(f"topk: k={k!r} is out of range for dimension {dim} of size {n} "
                         f"(input shape {tuple(x.shape)})")
    if x._data.ndim == 0:
        return _TopK(*sort(x))
    idx = argsort(x, d, largest)
    idx = getitem(idx, (slice(None),) * d + (slice(0, k),))
    return _TopK(gather(x, d, idx), idx)


@method
def kthvalue(input, k: int, dim: int = -1, keepdim: bool = False):
    """The ``k``-th smallest entry (1-based) along ``dim`` and its index.

    Example:
        >>> import chainrule
        >>> chainrule.kthvalue(chainrule.tensor([3.0, 1.0, 2.0]), 2).values
        tensor(2.)
    """
    x, d = _sort_input(input, dim, "kthvalue")
    n = x._data.shape[d] if x._data.ndim else 1
    if not isinstance(k, int) or not 1 <= k <= n:
        raise IndexError(f"kthvalue: k={k!r} is out of range for dimension {dim} of size {n} "
                         f"(input shape {tuple(x.shape)})")
    if x._data.ndim == 0:
        return _KthValue(*sort(x))
    idx = argsort(x, d)
    idx = getitem(idx, (slice(None),) * d + (slice(k - 1, k),))
    values = gather(x, d, idx)
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return _KthValue(values, idx)
