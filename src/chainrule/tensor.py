"""The Tensor: an array, an autograd node, operator overloads and PyTorch-named methods.

A Tensor holds a NumPy or CuPy array (``_data``), the node that produced it (``_node``; None
for leaves), whether it requires grad, its ``.grad`` and a version counter shared with its
views. Every computation goes through a primitive (``chainrule.primitives``) via
``chainrule.autograd.graph.apply``; most methods here delegate to ``chainrule.ops``.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([2., 4., 6.])
"""

from __future__ import annotations

import numpy as np

from . import backend
from .autograd import graph as _graph
from .autograd.grad_mode import STATE
from .backend import Device, as_device, as_dtype, device_of, from_numpy_dtype
from .errors import GraphError, ShapeError

_ops = None  # chainrule.ops, which sits above this module, hands itself in (use_ops)
_ndarray = np.ndarray


def _wrap(data, node=None):
    """Make a Tensor around an array without any checks (internal fast path)."""
    t = _new(Tensor)
    t._data = data
    t._node = node
    t._rg = node is not None
    t._grad = None
    t._vc = None
    t._hooks = None
    t._retains = False
    t._fw = None
    t._view = None
    return t


_new = object.__new__


class Tensor:
    """An n-dimensional array with autograd. Create with ``chainrule.tensor`` & friends.

    Example:
        >>> import chainrule
        >>> t = chainrule.tensor([[1, 2], [3, 4]])
        >>> t.shape, t.dtype
        ((2, 2), chainrule.int64)
    """

    __slots__ = (
        "__weakref__",
        "_data",
        "_fw",
        "_grad",
        "_hooks",
        "_node",
        "_retains",
        "_rg",
        "_vc",
        "_view",
    )
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, *args, dtype=None, device=None, requires_grad=False):
        """PyTorch's ``torch.Tensor(...)``: ``Tensor(2, 3)`` is a (zero-filled) float tensor of
        that shape, ``Tensor()`` an empty one, ``Tensor(data)`` the data as the default float
        dtype (a tensor argument keeps its dtype); ``chainrule.tensor`` is the usual factory."""
        from ._torch_methods import construct  # noqa: PLC0415 - it imports this module

        if len(args) == 1 and isinstance(args[0], Tensor) and dtype is None:
            dtype = args[0].dtype
        src = construct(args, dtype, device, requires_grad)
        self._data = src._data
        self._node = None
        self._rg = src._rg
        self._grad = None
        self._vc = None
        self._hooks = None
        self._retains = False
        self._fw = None
        self._view = None

    # ------------------------------------------------------------------ metadata
    @property
    def shape(self) -> tuple:
        """The shape as a tuple (PyTorch returns torch.Size, a tuple subclass)."""
        return self._data.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self._data.ndim

    def dim(self) -> int:
        """Number of dimensions."""
        return self._data.ndim

    @property
    def dtype(self):
        """The chainrule dtype."""
        return from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> Device:
        """Where the data lives: ``device(type='cpu')`` or ``device(type='cuda', index=0)``."""
        return device_of(self._data)

    @property
    def is_cuda(self) -> bool:
        """True when on a GPU."""
        return type(self._data) is not _ndarray

    def size(self, dim: int | None = None):
        """The shape, or its length along ``dim``."""
        if dim is None:
            return self._data.shape
        return self._data.shape[_ops.normalize_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        """Number of elements."""
        return int(self._data.size)

    def element_size(self) -> int:
        """Bytes per element."""
        return self._data.itemsize

    def is_floating_point(self) -> bool:
        """True for float dtypes."""
        return self._data.dtype.kind in "fV"

    @property
    def T(self) -> Tensor:  # noqa: N802
        """All dimensions reversed (a 2-D transpose)."""
        return _ops.permute(self, tuple(range(self.ndim - 1, -1, -1)))

    @property
    def mT(self) -> Tensor:  # noqa: N802
        """The last two dimensions swapped."""
        return _ops.transpose(self, -2, -1)

    # ------------------------------------------------------------------ autograd
    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to this tensor."""
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag: bool):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set requires_grad on a leaf in place; only float tensors can require grad."""
        if self._node is not None:
            if not requires_grad:
                raise GraphError(
                    "requires_grad_(False) on a non-leaf tensor: use .detach() to get a tensor "
                    "outside the graph")
            return self
        if requires_grad and self._data.dtype.kind not in "fV":
            raise TypeError(f"only floating-point tensors can require gradients; this one is "
                            f"{self.dtype.name} with shape {tuple(self.shape)}")
        self._rg = bool(requires_grad)
        return self

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded op."""
        return self._node is None

    @property
    def grad_fn(self):
        """The node that produced this tensor (None for leaves)."""
        return self._node

    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient (leaves, and non-leaves after ``retain_grad()``)."""
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(value)}")
            if value.shape != self.shape:
                raise ShapeError(f"assigned grad has shape {tuple(value.shape)}, but the tensor "
                                 f"has shape {tuple(self.shape)}")
            if value._data.dtype != self._data.dtype:
                raise TypeError(f"assigned grad has dtype {value.dtype.name}, but the tensor has "
                                f"dtype {self.dtype.name}")
            if value.device != self.device:
                raise TypeError(f"assigned grad is on {value.device}, the tensor on {self.device}")
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        """True for a non-leaf after ``retain_grad()``."""
        return self._retains

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if self._node is None:
            if not self._rg:
                raise GraphError("retain_grad() on a tensor that does not require grad")
            return
        if not self._retains:
            import weakref  # noqa: PLC0415

            self._retains = True
            node = self._node
            if node.retains is None:
                node.retains = []
            node.retains.append(weakref.ref(self))

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor
        replaces the gradient. Returns a handle with ``.remove()``.

        Example:
            >>> import chainrule
            >>> x = chainrule.ones(2, requires_grad=True)
            >>> h = x.register_hook(lambda g: g * 10)
            >>> (x * 1).sum().backward(); x.grad
            tensor([10., 10.])
        """
        if not self._rg:
            raise GraphError("cannot register a hook on a tensor that does not require grad")
        if self._node is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self._node.pre_hooks is None:
                self._node.pre_hooks = []
            hooks = self._node.pre_hooks
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` on a leaf right after backward accumulated into its ``.grad``
        (PyTorch's name). Returns a handle with ``.remove()``.

        Example:
            >>> import chainrule
            >>> w = chainrule.ones(2, requires_grad=True)
            >>> h = w.register_post_accumulate_grad_hook(lambda p: p.grad.mul_(0.5))
            >>> (w * 4).sum().backward(); w.grad
            tensor([2., 2.])
        """
        from .autograd.post_hooks import register  # noqa: PLC0415

        return register(self, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see autograd.backward)."""
        from .autograd.engine import backward  # noqa: PLC0415

        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph,
                 inputs=inputs)

    def detach(self) -> Tensor:
        """A tensor sharing data (and version counter), outside the graph."""
        t = _wrap(self._data)
        if self._vc is None:
            self._vc = [0]
        t._vc = self._vc
        return t

    def detach_(self) -> Tensor:
        """Detach in place: this tensor becomes a leaf that does not require grad."""
        self._node = None
        self._rg = False
        return self

    @property
    def data(self) -> Tensor:
        """The data as a detached tensor sharing memory (PyTorch's ``.data``)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor):
        if not isinstance(value, Tensor):
            raise TypeError("Tensor.data must be set to a Tensor")
        self._data = value._data
        self._bump()

    def _bump(self):
        vc = self._vc
        if vc is None:
            self._vc = [1]
        else:
            vc[0] += 1

    @property
    def _version(self) -> int:
        return 0 if self._vc is None else self._vc[0]

    # ------------------------------------------------------------------ conversion
    def item(self):
        """The single value as a Python number."""
        if self._data.size != 1:
            raise ShapeError(f"item(): tensor has {self._data.size} elements (shape "
                             f"{tuple(self.shape)}); only one-element tensors can become scalars")
        return self._data.item()

    def tolist(self):
        """Nested Python lists (a number for 0-d)."""
        return self._host().tolist()

    def numpy(self, *, force: bool = False):
        """The data as a NumPy array (shares memory on CPU).

        Refuses, like PyTorch, for tensors that require grad unless ``force=True`` (detach first).
        """
        if self._rg and not force:
            raise GraphError("numpy() on a tensor that requires grad: call .detach().numpy()")
        return self._host()

    def _host(self):
        a = self._data
        return a if type(a) is _ndarray else a.get()

    def __array__(self, dtype=None, copy=None):
        a = self._host()
        if dtype is not None:
            a = a.astype(dtype, copy=False)
        return a

    def __dlpack__(self, *args, **kwargs):
        """Export as a DLPack capsule sharing this tensor's memory (``from_dlpack`` on the other
        side); refused for tensors that require grad, as in PyTorch."""
        if self._rg:
            raise BufferError("__dlpack__: cannot export a tensor that requires grad; export "
                              "tensor.detach() instead")
        if self._data.dtype.kind == "V":
            raise BufferError("__dlpack__: bfloat16 tensors cannot be exported (NumPy's DLPack "
                              "has no bfloat16); export tensor.float() instead")
        return self._data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        """The (device type, device id) pair of the DLPack standard: (1, 0) for the CPU."""
        return self._data.__dlpack_device__()

    def to(self, *args, dtype=None, device=None, copy: bool = False) -> Tensor:
        """Cast and/or move: ``t.to(chainrule.float64)``, ``t.to("cuda")``, ``t.to(other)``."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, Device)) and not (isinstance(a, str) and _is_dtype_name(a)):
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            device = as_device(device)
            if device != self.device:
                out = _ops.to_device(out, device)
        if dtype is not None:
            dtype = as_dtype(dtype)
            if dtype.np != out._data.dtype:
                out = _ops.cast(out, dtype)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        """A copy on the CPU (self when already there)."""
        return self.to("cpu")

    def cuda(self, device=None) -> Tensor:
        """A copy on a GPU."""
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self) -> Tensor:
        """Cast to float32."""
        return self.to(backend.float32)

    def double(self) -> Tensor:
        """Cast to float64."""
        return self.to(backend.float64)

    def half(self) -> Tensor:
        """Cast to float16."""
        return self.to(backend.float16)

    def bfloat16(self) -> Tensor:
        """Cast to bfloat16 (needs the ``bf16`` extra, ml_dtypes)."""
        return self.to(backend.bfloat16_dtype())

    def long(self) -> Tensor:
        """Cast to int64."""
        return self.to(backend.int64)

    def int(self) -> Tensor:
        """Cast to int32."""
        return self.to(backend.int32)

    def bool(self) -> Tensor:
        """Cast to bool."""
        return self.to(backend.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        """Cast to ``other``'s dtype."""
        return self.to(other.dtype)

    def clone(self) -> Tensor:
        """A copy that stays in the graph (gradient flows back)."""
        return _ops.clone(self)

    def contiguous(self) -> Tensor:
        """A C-contiguous tensor (self when it already is)."""
        if self._data.flags.c_contiguous:
            return self
        return _ops.clone(self)

    def is_contiguous(self) -> bool:
        """True when the data is C-contiguous."""
        return bool(self._data.flags.c_contiguous)

    # ------------------------------------------------------------------ python protocol
    def __repr__(self):
        return _format(self)

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __bool__(self):
        if self._data.size != 1:
            raise ShapeError(f"the truth value of a tensor with {self._data.size} elements is "
                             "ambiguous; use .any() or .all()")
        return bool(self._data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    __hash__ = object.__hash__

    def __reduce_ex__(self, protocol):
        """Pickle (also through multiprocessing queues) as data + dtype + device +
        requires_grad, like any tensor: a view pickles as its values, a non-leaf as a leaf
        (the graph is not pickled), and ``.grad`` is not kept, as in PyTorch."""
        cls = type(self)
        return (_rebuild_tensor, (self._host(), str(self.device), self._rg)
                + (() if cls is Tensor else (cls,)))

    # ------------------------------------------------------------------ operators
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __floordiv__(self, other):
        return _ops.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _ops.floor_divide(other, self)

    def __mod__(self, other):
        return _ops.remainder(self, other)

    def __rmod__(self, other):
        return _ops.remainder(other, self)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __invert__(self):
        return _ops.logical_not(self) if self._data.dtype.kind == "b" else _ops.bitwise_not(self)

    def __and__(self, other):  # bitwise (logical on bool tensors), as in PyTorch
        return _ops.bitwise_and(self, other)

    def __rand__(self, other):
        return _ops.bitwise_and(other, self)

    def __or__(self, other):
        return _ops.bitwise_or(self, other)

    def __ror__(self, other):
        return _ops.bitwise_or(other, self)

    def __xor__(self, other):
        return _ops.bitwise_xor(self, other)

    def __rxor__(self, other):
        return _ops.bitwise_xor(other, self)

    def __eq__(self, other):
        return _ops.eq(self, other)

    def __ne__(self, other):
        return _ops.ne(self, other)

    def __lt__(self, other):
        return _ops.lt(self, other)

    def __le__(self, other):
        return _ops.le(self, other)

    def __gt__(self, other):
        return _ops.gt(self, other)

    def __ge__(self, other):
        return _ops.ge(self, other)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def __setitem__(self, index, value):
        _ops.setitem(self, index, value)

    # in-place operators
    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def _inplace(self, result: Tensor, op: str) -> Tensor:
        """Write ``result`` (computed out of place) into self's buffer, PyTorch-style.

        When the result is recorded, self takes over its graph node (the op's rules read a
        clone of the old value, see _inplace_op, so nothing a node saved is overwritten). When
        it is not recorded but self was in the graph, self leaves the graph: its new value is a
        constant. In-place changes to a view of a tensor in the graph are refused: the base's
        gradient would not see them.
        """
        self._check_writable(op)
        if result.shape != self.shape:
            raise ShapeError(f"{op}: the result has shape {tuple(result.shape)}, which cannot be "
                             f"written into a tensor of shape {tuple(self.shape)} in place")
        rd, sd = result._data.dtype, self._data.dtype
        if rd != sd:
            if from_numpy_dtype(rd).category > from_numpy_dtype(sd).category:
                raise TypeError(f"{op}: result type {from_numpy_dtype(rd).name} can't be cast to "
                                f"the in-place tensor's dtype {from_numpy_dtype(sd).name}")
            result = _ops.cast(result, from_numpy_dtype(sd))
        recorded = result._node is not None
        if self._view is not None and STATE.enabled and (recorded or self._rg):
            _rebase_base(self, result, op)
        xp = backend.get_array_module(self._data)
        xp.copyto(self._data, result._data)
        self._bump()
        if recorded:
            self._node = result._node
            self._rg = True
        elif self._node is not None and STATE.enabled:
            self._node = None  # overwritten by a constant: no gradient flows to the old value
            self._rg = False
        if self._view is not None:
            self._view = (self._vc[0], *self._view[1:])
        if _graph.FORWARD.levels:  # carry the result's tangents / batch over to self
            from .autograd.forward import rebind  # noqa: PLC0415

            rebind(self, result)
        return self

    def _inplace_op(self, fn, op: str, other=None) -> Tensor:
        """Run ``fn(src)`` out of place and write it into self. When the op will be recorded,
        ``src`` is a clone, so the op's saved inputs are not the buffer being overwritten."""
        self._check_inplace_leaf(op)
        src = self
        if STATE.enabled and (self._rg or (isinstance(other, Tensor) and other._rg)):
            src = _ops.clone(self)
        return self._inplace(fn(src), op)

    def _check_writable(self, op: str):
        a = self._data
        if type(a) is _ndarray and not a.flags.writeable:
            raise ValueError(f"{op}: this tensor (shape {tuple(self.shape)}) shares read-only "
                             "memory (a read-only NumPy array or DLPack source); copy it with "
                             ".clone() before writing to it")

    def _check_inplace_leaf(self, op: str):
        if self._node is None and self._rg and STATE.enabled:
            raise GraphError(f"{op}: a leaf tensor that requires grad (shape {tuple(self.shape)}) "
                             "cannot be changed in place while grad mode is on; wrap the update "
                             "in chainrule.no_grad() or use an out-of-place op")

    def add_(self, other, *, alpha=1) -> Tensor:
        """In place: self += alpha * other."""
        return self._inplace_op(lambda s: _ops.add(s, other, alpha=alpha), "add_", other)

    def relu_(self) -> Tensor:
        """In place: self = relu(self)."""
        return self._inplace_op(_ops.relu, "relu_")

    def masked_fill_(self, mask, value) -> Tensor:
        """In place: self = masked_fill(self, mask, value)."""
        other = value if isinstance(value, Tensor) else None
        return self._inplace_op(lambda s: _ops.masked_fill(s, mask, value), "masked_fill_",
                                other)

    def sub_(self, other, *, alpha=1) -> Tensor:
        """In place: self -= alpha * other."""
        return self._inplace_op(lambda s: _ops.sub(s, other, alpha=alpha), "sub_", other)

    def mul_(self, other) -> Tensor:
        """In place: self *= other."""
        return self._inplace_op(lambda s: _ops.mul(s, other), "mul_", other)

    def div_(self, other) -> Tensor:
        """In place: self /= other."""
        return self._inplace_op(lambda s: _ops.div(s, other), "div_", other)

    def pow_(self, other) -> Tensor:
        """In place: self **= other."""
        return self._inplace_op(lambda s: _ops.pow(s, other), "pow_", other)

    def clamp_(self, min=None, max=None) -> Tensor:
        """In place clamp."""
        bounds = min if isinstance(min, Tensor) and min._rg else max
        return self._inplace_op(lambda s: _ops.clamp(s, min, max), "clamp_", bounds)

    def copy_(self, src) -> Tensor:
        """In place: copy ``src`` (broadcast, cast, moved) into self; gradient flows to src."""
        self._check_inplace_leaf("copy_")
        if not isinstance(src, Tensor):
            src = tensor(src, dtype=self.dtype, device=self.device)
        if src.device != self.device:
            src = src.to(self.device)
        if src.dtype is not self.dtype:
            src = _ops.cast(src, self.dtype)
        if src.shape != self.shape:
            src = _ops.broadcast_to(src, self.shape)
        if src._rg and STATE.enabled:
            src = _ops.clone(src)
        return self._inplace(src, "copy_")

    def fill_(self, value) -> Tensor:
        """In place: every element becomes ``value``."""
        self._check_inplace_leaf("fill_")
        if isinstance(value, Tensor):
            if value._rg and STATE.enabled:
                return self._inplace(_ops.broadcast_to(_ops.cast(value, self.dtype), self.shape)
                                     * 1, "fill_")
            value = value.item()
        xp = backend.get_array_module(self._data)
        return self._inplace(_wrap(xp.full_like(self._data, value)), "fill_")

    def zero_(self) -> Tensor:
        """In place: every element becomes 0."""
        return self.fill_(0)

    def normal_(self, mean=0.0, std=1.0, *, generator=None) -> Tensor:
        """Fill in place from N(mean, std^2)."""
        from .random import _normal  # noqa: PLC0415

        return self._fill_from(_normal(self.shape, mean, std, generator))

    def uniform_(self, a=0.0, b=1.0, *, generator=None) -> Tensor:
        """Fill in place from U(a, b)."""
        from .random import _uniform  # noqa: PLC0415

        return self._fill_from(_uniform(self.shape, a, b, generator))

    def _fill_from(self, host_array) -> Tensor:
        self._check_inplace_leaf("fill")
        self._check_writable("fill")
        xp = backend.get_array_module(self._data)
        self._data[...] = xp.asarray(host_array).astype(self._data.dtype, copy=False)
        self._bump()
        return self


def _rebuild_tensor(host_array, device: str, requires_grad: bool, cls=None) -> Tensor:
    """Unpickle a tensor (see ``Tensor.__reduce_ex__``); a subclass such as ``Parameter``
    is rebuilt through its constructor ``cls(tensor, requires_grad)``."""
    t = tensor(host_array, device=device)
    if cls is not None:
        return cls(t, requires_grad)
    return t.requires_grad_(requires_grad) if requires_grad else t


def _rebase_base(view: Tensor, value: Tensor, op: str) -> None:
    """An in-place op on a view changes its base: give the base a node that writes ``value``
    into it (index_put for a slice; the inverse movement for reshape/permute/flip), and
    recurse when the base is itself a view. The new node reads the base's old graph."""
    _, base, prim, params = view._view
    if base._node is None and base._rg:
        raise GraphError(f"{op}: a view of a leaf tensor that requires grad (shape "
                         f"{tuple(base.shape)}) cannot be changed in place while grad mode is on")
    from .primitives import movement as M  # noqa: PLC0415

    name = prim.name
    if name == "getitem":
        new_base = M.index_put(base, value, index=params["index"])
    elif name == "reshape":
        new_base = M.reshape(value, shape=base.shape)
    elif name == "permute":
        from .primitives.movement import _inverse_perm  # noqa: PLC0415

        new_base = M.permute(value, axes=_inverse_perm(params["axes"]))
    elif name == "flip":
        new_base = M.flip(value, axes=params["axes"])
    else:
        raise GraphError(f"{op}: in-place change of a {name} view while grad is recorded is not "
                         "supported; clone() the view first or use an out-of-place op")
    if base._view is not None:
        _rebase_base(base, new_base, op)
    base._node = new_base._node
    base._rg = new_base._rg


def use_ops(module) -> None:
    """Called once by :mod:`chainrule.ops` as it loads: the Tensor operators and in-place
    methods delegate to its functions (ops sits above this module, so it cannot be imported
    here; the ops that are also methods mark themselves with ``ops._util.method``)."""
    global _ops
    _ops = module


class _HookHandle:
    """Returned by register_hook; ``remove()`` detaches the hook."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        try:
            self._hooks.remove(self._hook)
        except ValueError:
            pass


def _is_dtype_name(s: str) -> bool:
    try:
        as_dtype(s)
        return True
    except TypeError:
        return False


# the printing and the factory live in their own modules; both names stay importable here
from ._tensor_factory import tensor  # noqa: E402 - it builds on Tensor, defined above
from ._tensor_str import PRINT_OPTIONS, _format  # noqa: E402, F401 - PRINT_OPTIONS re-exported

_graph.Tensor = Tensor
_graph._wrap = _wrap
_graph.make_tensor = tensor
