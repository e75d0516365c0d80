"""Sparse COO matrices, enough for graph networks: ``sparse_coo_tensor``, ``Tensor.to_sparse``,
``sparse.mm`` / ``spmm`` / ``S @ dense``, with gradients to the dense operand and to the
stored values.

A :class:`SparseTensor` keeps ``indices`` (an int64 array of shape (ndim, nnz)), ``values`` (a
1-D chainrule tensor, which may require grad) and a shape. Products are composites: gather the
dense rows named by the column indices, scale them by the values, and scatter-add them into
the output rows, so every gradient comes from gather and scatter-add. Only sparse dimensions
are supported (no hybrid tensors with dense trailing dimensions); there is no SciPy
dependency.

Example:
    >>> import chainrule
    >>> a = chainrule.sparse_coo_tensor([[0, 1, 1], [1, 0, 1]], [2.0, 3.0, 4.0], (2, 2))
    >>> x = chainrule.ones(2, 1, requires_grad=True)
    >>> y = chainrule.sparse.mm(a, x); y.sum().backward()
    >>> y.flatten().tolist(), x.grad.flatten().tolist()
    ([2.0, 7.0], [3.0, 6.0])
"""

from __future__ import annotations

from . import backend, ops
from .backend import as_dtype
from .backend import np as _np
from .errors import ShapeError
from .primitives import movement as _PM
from .tensor import Tensor, _wrap, tensor

__all__ = ["SparseTensor", "mm", "sparse_coo_tensor", "spmm", "sum", "to_sparse"]


class SparseTensor:
    """A sparse COO tensor (PyTorch's ``layout=torch.sparse_coo``). Build one with
    :func:`sparse_coo_tensor` or ``dense.to_sparse()``.

    Example:
        >>> import chainrule
        >>> s = chainrule.eye(3).to_sparse()
        >>> s._nnz(), s.shape, s.to_dense().sum()
        (3, (3, 3), tensor(3.))
    """

    is_sparse = True
    layout = "sparse_coo"

    def __init__(self, indices, values: Tensor, size: tuple, coalesced: bool = False):
        self._indices = indices
        self._values = values
        self._shape = tuple(int(s) for s in size)
        self._coalesced = coalesced

    # ---------------------------------------------------------------- metadata
    @property
    def shape(self) -> tuple:
        """The dense shape."""
        return self._shape

    def size(self, dim=None):
        """The dense shape, or its length along ``dim``."""
        return self._shape if dim is None else self._shape[dim]

    def dim(self) -> int:
        """Number of dimensions."""
        return len(self._shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self._shape)

    @property
    def dtype(self):
        """The values' dtype."""
        return self._values.dtype

    @property
    def device(self):
        """The values' device."""
        return self._values.device

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to the values."""
        return self._values.requires_grad

    def requires_grad_(self, requires_grad: bool = True) -> SparseTensor:
        """Make the values require grad (in place)."""
        self._values.requires_grad_(requires_grad)
        return self

    def indices(self) -> Tensor:
        """The (ndim, nnz) int64 indices (PyTorch asks for coalesce() first; so do we)."""
        if not self._coalesced:
            raise RuntimeError("indices(): call .coalesce() first (an uncoalesced sparse tensor "
                               "may hold duplicate indices), or use ._indices()")
        return _wrap(self._indices)

    def values(self) -> Tensor:
        """The nnz values (after coalesce(), see :meth:`indices`)."""
        if not self._coalesced:
            raise RuntimeError("values(): call .coalesce() first, or use ._values()")
        return self._values

    def _nnz(self) -> int:
        return int(self._indices.shape[1])

    def is_coalesced(self) -> bool:
        """True when the indices are sorted and unique."""
        return self._coalesced

    # ---------------------------------------------------------------- conversions
    def coalesce(self) -> SparseTensor:
        """Sorted, unique indices; the values of duplicates are summed (differentiably)."""
        if self._coalesced:
            return self
        xp = backend.get_array_module(self._indices)
        flat = _flat_index(self._indices, self._shape, xp)
        uniq, inverse = xp.unique(flat, return_inverse=True)
        values = _PM.scatter_add(self._values, _wrap(inverse.reshape(-1).astype("int64")),
                                 shape=(int(uniq.size),), axis=0)
        idx = xp.stack(xp.unravel_index(uniq, self._shape)).astype("int64") if self._shape \
            else xp.zeros((0, uniq.size), dtype="int64")
        return SparseTensor(idx, values, self._shape, coalesced=True)

    def to_dense(self) -> Tensor:
        """The dense tensor (duplicates summed); differentiable with respect to the values."""
        xp = backend.get_array_module(self._indices)
        flat = _flat_index(self._indices, self._shape, xp)
        n = 1
        for s in self._shape:
            n *= s
        out = _PM.scatter_add(self._values, _wrap(flat.astype("int64")), shape=(n,), axis=0)
        return ops.reshape(out, self._shape)

    def to(self, *args, **kwargs) -> SparseTensor:
        """Move or cast the values (``to("cuda")``, ``to(chainrule.float64)``)."""
        values = self._values.to(*args, **kwargs)
        idx = backend.to_device(self._indices, values.device)
        return SparseTensor(idx, values, self._shape, self._coalesced)

    def float(self) -> SparseTensor:
        """Values cast to float32."""
        return self.to(backend.float32)

    def double(self) -> SparseTensor:
        """Values cast to float64."""
        return self.to(backend.float64)

    def cpu(self) -> SparseTensor:
        """On the CPU."""
        return self.to("cpu")

    def detach(self) -> SparseTensor:
        """The same entries outside the graph."""
        return SparseTensor(self._indices, self._values.detach(), self._shape, self._coalesced)

    def t(self) -> SparseTensor:
        """The transpose of a 2-D sparse tensor."""
        if self.ndim != 2:
            raise ShapeError(f"t(): expected a 2-D sparse tensor, got shape {self._shape}")
        return SparseTensor(self._indices[::-1].copy(), self._values, self._shape[::-1])

    # ---------------------------------------------------------------- arithmetic
    def __mul__(self, other):
        if isinstance(other, (int, float)) or (isinstance(other, Tensor) and other.ndim == 0):
            return SparseTensor(self._indices, self._values * other, self._shape,
                                self._coalesced)
        raise TypeError("sparse * x: only scalars are supported; use to_dense() for "
                        "elementwise products with tensors")

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self * (1.0 / other)

    def __neg__(self):
        return self * -1.0

    def __matmul__(self, other):
        return mm(self, other)

    def __rmatmul__(self, other):
        return mm(other, self)

    def __repr__(self):
        return (f"tensor(indices={_wrap(self._indices)!r},\n       values={self._values!r},\n"
                f"       size={self._shape}, nnz={self._nnz()}, layout=torch.sparse_coo)")


def _flat_index(indices, shape, xp):
    flat = xp.zeros(indices.shape[1], dtype="int64")
    for d, s in enumerate(shape):
        flat = flat * s + indices[d]
    return flat


def sparse_coo_tensor(indices, values, size=None, *, dtype=None, device=None,
                      requires_grad: bool = False, check_invariants=None,
                      is_coalesced=None) -> SparseTensor:
    """A sparse COO tensor with ``values[k]`` at ``indices[:, k]`` (duplicates add up); the
    size defaults to one past the largest index in each dimension.

    Example:
        >>> import chainrule
        >>> chainrule.sparse_coo_tensor([[0, 2]], [5.0, 6.0]).to_dense()
        tensor([5., 0., 6.])
    """
    if isinstance(values, Tensor):
        v = values if dtype is None else values.to(dtype)
        if device is not None:
            v = v.to(device)
    else:
        v = tensor(values, dtype=dtype, device=device)
    if v.ndim != 1:
        raise ShapeError(f"sparse_coo_tensor: values must be 1-D (hybrid sparse tensors with "
                         f"dense dimensions are not supported), got shape {tuple(v.shape)}")
    xp = backend.get_array_module(v._data)
    idx = indices._data if isinstance(indices, Tensor) else _np.asarray(indices)
    idx = backend.to_device(idx, v.device) if xp is not _np else _np.asarray(idx)
    if idx.ndim != 2 or (idx.size and idx.dtype.kind not in "iu"):
        raise ShapeError(f"sparse_coo_tensor: indices must be a 2-D integer array of shape "
                         f"(ndim, nnz), got shape {tuple(idx.shape)} and dtype {idx.dtype}")
    idx = idx.astype("int64")
    if idx.shape[1] != v.shape[0]:
        raise ShapeError(f"sparse_coo_tensor: {idx.shape[1]} indices but {v.shape[0]} values")
    if size is None:
        size = tuple(int(m) + 1 for m in idx.max(axis=1)) if idx.shape[1] else (0,) * len(idx)
    size = tuple(int(s) for s in size)
    if len(size) != idx.shape[0]:
        raise ShapeError(f"sparse_coo_tensor: indices have {idx.shape[0]} rows but size {size} "
                         f"has {len(size)} dimensions")
    if idx.shape[1] and ((idx < 0).any() or (idx.max(axis=1) >= xp.asarray(size)).any()):
        raise IndexError(f"sparse_coo_tensor: an index is out of range for size {size}")
    if requires_grad:
        v.requires_grad_(True)
    return SparseTensor(idx, v, size, coalesced=bool(is_coalesced))


def to_sparse(input: Tensor, sparse_dim=None) -> SparseTensor:
    """The non-zero entries of a dense tensor as a coalesced sparse tensor; the values stay
    in the graph (gradients flow back to the dense tensor).

    Example:
        >>> import chainrule
        >>> chainrule.tensor([[0.0, 2.0], [3.0, 0.0]]).to_sparse()._nnz()
        2
    """
    if sparse_dim is not None and sparse_dim != input.ndim:
        raise ValueError(f"to_sparse: sparse_dim={sparse_dim} would make a hybrid tensor, "
                         f"which is not supported; use sparse_dim=None ({input.ndim})")
    xp = backend.get_array_module(input._data)
    nz = xp.nonzero(input._data)
    idx = xp.stack(nz).astype("int64") if nz else xp.zeros((0, 1), dtype="int64")
    values = ops.getitem(input, tuple(_wrap(i) for i in nz)) if nz else ops.reshape(input, (1,))
    return SparseTensor(idx, values, input.shape, coalesced=True)


def mm(mat1, mat2) -> Tensor:
    """``sparse @ dense`` (or ``dense @ sparse``) as a dense tensor; gradients flow to the
    dense operand and to the sparse values.

    Example:
        >>> import chainrule
        >>> s = chainrule.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], (2, 2))
        >>> chainrule.sparse.mm(s, chainrule.tensor([[1.0], [10.0]])).flatten()
        tensor([10.,  2.])
    """
    if isinstance(mat2, SparseTensor) and not isinstance(mat1, SparseTensor):
        return ops.transpose(mm(mat2.t(), ops.transpose(mat1, 0, 1)), 0, 1)
    if isinstance(mat2, SparseTensor):
        return mm(mat1, mat2.to_dense())
    if not isinstance(mat1, SparseTensor):
        return ops.mm(mat1, mat2)
    dense = mat2 if isinstance(mat2, Tensor) else tensor(mat2)
    if mat1.ndim != 2 or dense.ndim not in (1, 2) or mat1.shape[1] != dense.shape[0]:
        raise ShapeError(f"sparse.mm: shapes {mat1.shape} (sparse) and {tuple(dense.shape)} "
                         "cannot be multiplied")
    vec = dense.ndim == 1
    d2 = ops.unsqueeze(dense, 1) if vec else dense
    rows, cols = mat1._indices[0], mat1._indices[1]
    values = mat1._values
    if values.dtype != d2.dtype:
        values = values.to(backend.result_type((values.dtype, 1), (d2.dtype, 1)))
        d2 = d2.to(values.dtype)
    contrib = ops.getitem(d2, _wrap(cols)) * ops.unsqueeze(values, 1)
    xp = backend.get_array_module(rows)
    k = d2.shape[1]
    idx = xp.broadcast_to(rows[:, None], (rows.shape[0], k))
    out = _PM.scatter_add(contrib, _wrap(xp.ascontiguousarray(idx)), shape=(mat1.shape[0], k),
                          axis=0)
    return ops.reshape(out, (mat1.shape[0],)) if vec else ops.reshape(out, out.shape)


spmm = mm


def sum(input: SparseTensor, dim=None, dtype=None):
    """Sum of a sparse tensor's entries (all of them, or over ``dim``) as a dense tensor.

    Example:
        >>> import chainrule
        >>> chainrule.sparse.sum(chainrule.eye(2).to_sparse())
        tensor(2.)
    """
    d = input.to_dense()
    return ops.sum(d if dtype is None else d.to(as_dtype(dtype)), dim)
