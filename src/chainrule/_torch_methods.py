"""The Tensor methods of PyTorch compatibility that are not ops, and the legacy typed-tensor
constructors (issue 14).

Ops that PyTorch also offers as methods (``x.sort()``, ``x.addmm(...)``) mark themselves with
``@method`` where they are defined in ``chainrule/ops`` (docs/primitives.md, "three places per
op"). What stays here: the in-place variants of ops (``x.fmod_(2)``), the ``new_*`` factories,
``type()``, ``__format__``, the random fills (``bernoulli_``, ``random_``, ``exponential_``),
the memory queries (``stride``, ``data_ptr``, ``is_pinned``...), bound by ``bind(Tensor)``; and
``FloatTensor``/``DoubleTensor``/``HalfTensor``/``LongTensor``/``IntTensor``/``ShortTensor``/
``CharTensor``/``ByteTensor``/``BoolTensor``, the typed constructors, which also work with
``isinstance`` as in PyTorch.

Example:
    >>> import chainrule as torch
    >>> x = torch.ones(2, 3)
    >>> x.new_zeros(2).dtype, x.nelement(), f"{x.sum():.2f}"
    (chainrule.float32, 6, '6.00')
    >>> torch.LongTensor([1, 2]), isinstance(torch.zeros(1), torch.FloatTensor)
    (tensor([1, 2]), True)
"""

from __future__ import annotations

import numbers

from . import backend, ops
from .backend import as_dtype
from .tensor import Tensor, tensor

# ---------------------------------------------------------------- typed constructors
_TYPE_NAMES = {
    "float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
    "bfloat16": "BFloat16Tensor", "int64": "LongTensor", "int32": "IntTensor",
    "int16": "ShortTensor", "int8": "CharTensor", "uint8": "ByteTensor", "bool": "BoolTensor",
}


def _is_size(args) -> bool:
    return all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in args)


def construct(args: tuple, dtype, device=None, requires_grad: bool = False) -> Tensor:
    """PyTorch's legacy constructor rules: no argument gives an empty 1-D tensor; integers
    give that shape (zero-filled here, where PyTorch leaves memory uninitialised); one data
    argument (list, array, tensor) gives its values in ``dtype``."""
    dt = as_dtype(dtype) if dtype is not None else backend.default_float()
    if not args or _is_size(args):
        return ops.zeros(args if args else (0,), dtype=dt, device=device,
                         requires_grad=requires_grad)
    if len(args) == 1:
        return tensor(args[0], dtype=dt, device=device, requires_grad=requires_grad)
    raise TypeError(f"{_TYPE_NAMES.get(dt.name, 'Tensor')}(): expected sizes (ints) or one "
                    f"sequence of data, got {len(args)} arguments {args!r}")


class _TypedTensorMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype.name == cls._dtype and not obj.is_cuda

    def __call__(cls, *args, device=None):
        return construct(args, cls._dtype, device=device)

    def __repr__(cls):
        return f"<class 'chainrule.{cls.__name__}'>"


def _typed(dtype_name: str) -> type:
    name = _TYPE_NAMES[dtype_name]
    doc = (f"``{name}(2, 3)``: a zero {dtype_name} tensor of that shape; ``{name}(data)``: "
           f"data as {dtype_name}; ``isinstance(t, {name})`` checks the dtype (CPU tensors).")
    return _TypedTensorMeta(name, (), {"_dtype": dtype_name, "__doc__": doc})


FloatTensor = _typed("float32")
DoubleTensor = _typed("float64")
HalfTensor = _typed("float16")
LongTensor = _typed("int64")
IntTensor = _typed("int32")
ShortTensor = _typed("int16")
CharTensor = _typed("int8")
ByteTensor = _typed("uint8")
BoolTensor = _typed("bool")
TYPED = {c.__name__: c for c in (FloatTensor, DoubleTensor, HalfTensor, LongTensor, IntTensor,
                                 ShortTensor, CharTensor, ByteTensor, BoolTensor)}


# ---------------------------------------------------------------- methods
def _new(self, fn, size, dtype, device, requires_grad, *args):
    dtype = self.dtype if dtype is None else dtype
    device = self.device if device is None else device
    return fn(*size, *args, dtype=dtype, device=device, requires_grad=requires_grad)


def new_zeros(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Zeros of ``size`` with this tensor's dtype and device (unless given)."""
    return _new(self, ops.zeros, size, dtype, device, requires_grad)


def new_ones(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Ones of ``size`` with this tensor's dtype and device (unless given)."""
    return _new(self, ops.ones, size, dtype, device, requires_grad)


def new_empty(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """An uninitialised tensor of ``size`` with this tensor's dtype and device."""
    return _new(self, ops.empty, size, dtype, device, requires_grad)


def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """``fill_value`` everywhere, with this tensor's dtype and device (unless given)."""
    return _new(self, ops.full, (size,), dtype, device, requires_grad, fill_value)


def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A copy of ``data`` with this tensor's dtype and device (unless given)."""
    return tensor(data, dtype=self.dtype if dtype is None else dtype,
                  device=self.device if device is None else device,
                  requires_grad=requires_grad)


def type_(self, dtype=None, non_blocking: bool = False):
    """No argument: the type name (``'torch.FloatTensor'``, as PyTorch spells it, so that
    comparisons in ported code hold); with a dtype, a typed-tensor class or such a name: the
    tensor cast to it."""
    if dtype is None:
        name = _TYPE_NAMES.get(self.dtype.name, self.dtype.name)
        return f"torch.{'cuda.' if self.is_cuda else ''}{name}"
    if isinstance(dtype, _TypedTensorMeta):
        return self.to(dtype._dtype)
    if isinstance(dtype, str):
        short = dtype.split(".")[-1]
        for dname, tname in _TYPE_NAMES.items():
            if short == tname:
                return self.to(dname)
    return self.to(dtype)


def __format__(self, spec: str) -> str:  # noqa: N807 - the protocol's name
    """``format(t, ".4f")`` and f-strings: 0-d tensors format as their number; others use
    repr when the spec is empty and refuse a numeric spec, as in PyTorch."""
    if self.ndim == 0:
        return format(self.item(), spec)
    if not spec:
        return repr(self)
    raise TypeError(f"unsupported format string {spec!r} for a tensor of shape "
                    f"{tuple(self.shape)}: format t.item() or t.tolist() instead")


def bernoulli_(self, p=0.5, *, generator=None) -> Tensor:
    """Fill in place with 0/1 draws, 1 with probability ``p``."""
    draws = ops.bernoulli(ops.full_like(self, 0.0, dtype=backend.float64) + p,
                          generator=generator)
    return self._fill_from(draws._host())


def _inplace_method(name: str):
    fn = getattr(ops, name)

    def method(self, *args, **kwargs):
        other = next((a for a in args if isinstance(a, Tensor)), None)
        return self._inplace_op(lambda s: fn(s, *args, **kwargs), f"{name}_", other)

    method.__name__ = f"{name}_"
    method.__doc__ = f"In place: ``self = {name}(self, ...)``."
    return method


def _pin_memory(self, device=None) -> Tensor:
    """Self: there is no pinned memory to use on the CPU (see DataLoader's pin_memory)."""
    return self


def _share_memory_(self) -> Tensor:
    """Self: worker processes are forked, so they read the parent's arrays (copy-on-write);
    writes in a worker are not seen by the parent (PyTorch shares them)."""
    return self


def _stride(self, dim=None):
    """Strides in elements, as PyTorch reports them."""
    st = tuple(s // self._data.itemsize for s in self._data.strides)
    return st if dim is None else st[dim]


def _data_ptr(self) -> int:
    """The address of the first element."""
    a = self._data
    return int(a.ctypes.data if not self.is_cuda else a.data.ptr)


def random_(self, from_=0, to=None, *, generator=None) -> Tensor:
    """Fill in place with integers uniform in [from, to) (``random_(to)`` means [0, to))."""
    from .random import _draw  # noqa: PLC0415

    if to is None:
        from_, to = 0, from_
    if to is None or to <= from_:
        raise ValueError(f"random_: need from < to, got from={from_}, to={to}")
    return self._fill_from(_draw(generator, "integers", from_, to, size=self.shape))


def exponential_(self, lambd: float = 1.0, *, generator=None) -> Tensor:
    """Fill in place from the exponential distribution with rate ``lambd``."""
    from .random import _draw  # noqa: PLC0415

    return self._fill_from(_draw(generator, "exponential", 1.0 / lambd, size=self.shape))


def bind(cls) -> None:
    """Add the PyTorch-compatibility methods that are not ops to the Tensor class."""
    for name in ("abs neg exp log sqrt rsqrt sigmoid tanh sin cos floor ceil round trunc sign "
                 "square reciprocal clamp_min clamp_max addcmul addcdiv lerp addmm baddbmm "
                 "index_add index_fill index_copy scatter scatter_add tril triu remainder fmod "
                 "log1p expm1 exp2 log10 nan_to_num cumprod frac").split():
        setattr(cls, name + "_", _inplace_method(name))
    cls.ndimension = cls.dim
    cls.get_device = lambda self: -1 if not self.is_cuda else self.device.index
    cls.is_pinned = lambda self: False
    cls.pin_memory = _pin_memory
    cls.share_memory_ = _share_memory_
    cls.is_shared = lambda self: False
    cls.stride = _stride
    cls.data_ptr = _data_ptr
    cls.random_ = random_
    cls.exponential_ = exponential_
    cls.new_zeros, cls.new_ones, cls.new_empty = new_zeros, new_ones, new_empty
    cls.new_full, cls.new_tensor = new_full, new_tensor
    cls.type = type_
    cls.nelement = cls.numel
    cls.__format__ = __format__
    cls.bernoulli_ = bernoulli_
