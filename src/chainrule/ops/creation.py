"""Tensor creation: zeros, ones, full, empty, *_like, rand, randn, randint, arange, linspace,
eye, from_numpy.

Example:
    >>> import chainrule
    >>> chainrule.zeros(2, 3).shape, chainrule.arange(3)
    ((2, 3), tensor([0, 1, 2]))
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..backend import as_device, as_dtype
from ..errors import out_of_memory
from ..random import _draw
from ..tensor import Tensor, _wrap
from ._util import size_args


def _finish(arr, requires_grad: bool) -> Tensor:
    t = _wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _sizes(sizes: tuple, size, op: str) -> tuple:
    """The size given positionally (``zeros(2, 3)``, ``zeros((2, 3))``) or as PyTorch's
    ``size=`` keyword (``zeros(size=(2, 3))``), not both."""
    if size is None:
        return sizes
    if sizes:
        raise TypeError(f"{op}: size given both positionally {sizes} and as size={size!r}")
    return (size,)


def _make(fn_name, size, dtype, device, requires_grad, op, *args):
    shape = size_args(size, op)
    if any(s < 0 for s in shape):
        raise ValueError(f"{op}: negative dimension in size {shape}")
    d = as_dtype(dtype) if dtype is not None else backend.default_float()
    xp = as_device(device).xp
    try:
        arr = getattr(xp, fn_name)(shape, *args, dtype=d.np)
    except MemoryError as e:
        raise out_of_memory(op, shape, d.name, e) from None
    return _finish(arr, requires_grad)


def zeros(*sizes, size=None, dtype=None, device=None,
          requires_grad: bool = False) -> Tensor:
    """A tensor of zeros.

    Example:
        >>> import chainrule
        >>> chainrule.zeros(2)
        tensor([0., 0.])
    """
    return _make("zeros", _sizes(sizes, size, "zeros"), dtype, device, requires_grad, "zeros")


def ones(*sizes, size=None, dtype=None, device=None,
         requires_grad: bool = False) -> Tensor:
    """A tensor of ones.

    Example:
        >>> import chainrule
        >>> chainrule.ones(2, dtype=chainrule.int64)
        tensor([1, 1])
    """
    return _make("ones", _sizes(sizes, size, "ones"), dtype, device, requires_grad, "ones")


def empty(*sizes, size=None, dtype=None, device=None,
          requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor.

    Example:
        >>> import chainrule
        >>> chainrule.empty(3).shape
        (3,)
    """
    return _make("empty", _sizes(sizes, size, "empty"), dtype, device, requires_grad, "empty")


def _fill_dtype(fill_value):
    if isinstance(fill_value, bool):
        return backend.bool_
    if isinstance(fill_value, int):
        return backend.int64
    return backend.default_float()


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value`` (dtype inferred from it, as in PyTorch).

    Example:
        >>> import chainrule
        >>> chainrule.full((2,), 7)
        tensor([7, 7])
    """
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    d = as_dtype(dtype) if dtype is not None else _fill_dtype(fill_value)
    shape = size_args((size,) if not isinstance(size, (list, tuple)) else (tuple(size),), "full")
    xp = as_device(device).xp
    try:
        arr = xp.full(shape, fill_value, dtype=d.np)
    except MemoryError as e:
        raise out_of_memory("full", shape, d.name, e) from None
    return _finish(arr, requires_grad)


def _like(x: Tensor, dtype, device):
    return (as_dtype(dtype) if dtype is not None else x.dtype,
            device if device is not None else x.device)


def zeros_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Zeros with ``input``'s shape, dtype and device.

    Example:
        >>> import chainrule
        >>> chainrule.zeros_like(chainrule.ones(2, dtype=chainrule.int32))
        tensor([0, 0], dtype=chainrule.int32)
    """
    d, dev = _like(input, dtype, device)
    return zeros(input.shape, dtype=d, device=dev, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Ones with ``input``'s shape, dtype and device.

    Example:
        >>> import chainrule
        >>> chainrule.ones_like(chainrule.zeros(2))
        tensor([1., 1.])
    """
    d, dev = _like(input, dtype, device)
    return ones(input.shape, dtype=d, device=dev, requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uninitialised, with ``input``'s shape, dtype and device.

    Example:
        >>> import chainrule
        >>> chainrule.empty_like(chainrule.zeros(2)).shape
        (2,)
    """
    d, dev = _like(input, dtype, device)
    return empty(input.shape, dtype=d, device=dev, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None,
              requires_grad: bool = False) -> Tensor:
    """``fill_value`` everywhere, with ``input``'s shape, dtype and device.

    Example:
        >>> import chainrule
        >>> chainrule.full_like(chainrule.zeros(2), 3.5)
        tensor([3.5000, 3.5000])
    """
    d, dev = _like(input, dtype, device)
    return full(input.shape, fill_value, dtype=d, device=dev, requires_grad=requires_grad)


def _random(draw, size, dtype, device, requires_grad, op, generator):
    shape = size_args(size, op)
    d = as_dtype(dtype) if dtype is not None else backend.default_float()
    if not d.is_floating_point:
        raise TypeError(f"{op}: dtype must be floating point, got {d.name}")
    host = _draw(generator, draw, size=shape).astype(d.np, copy=False)
    dev = as_device(device)
    arr = host if dev.type == "cpu" else backend.to_device(host, dev)
    return _finish(arr, requires_grad)


def rand(*sizes, size=None, generator=None, dtype=None, device=None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples from [0, 1).

    Example:
        >>> import chainrule
        >>> bool(((chainrule.rand(100) >= 0) & (chainrule.rand(100) < 1)).all())
        True
    """
    return _random("random", _sizes(sizes, size, "rand"), dtype, device, requires_grad, "rand",
                   generator)


def randn(*sizes, size=None, generator=None, dtype=None, device=None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples.

    Example:
        >>> import chainrule
        >>> chainrule.randn(2, 3).shape
        (2, 3)
    """
    return _random("standard_normal", _sizes(sizes, size, "randn"), dtype, device,
                   requires_grad, "randn", generator)


def rand_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """rand with ``input``'s shape, dtype and device.

    Example:
        >>> import chainrule
        >>> chainrule.rand_like(chainrule.zeros(3)).shape
        (3,)
    """
    d, dev = _like(input, dtype, device)
    return rand(input.shape, dtype=d, device=dev, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """randn with ``input``'s shape, dtype and device.

    Example:
        >>> import chainrule
        >>> chainrule.randn_like(chainrule.zeros(3)).shape
        (3,)
    """
    d, dev = _like(input, dtype, device)
    return randn(input.shape, dtype=d, device=dev, requires_grad=requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    """Integers uniform in [low, high): ``randint(10, (3,))`` or ``randint(2, 10, (3,))``.

    Example:
        >>> import chainrule
        >>> int(chainrule.randint(5, (100,)).max()) < 5
        True
    """
    if size is None:
        if high is None:
            raise TypeError("randint: size is required")
        low, high, size = 0, low, high
    elif high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    shape = size_args((size,) if not isinstance(size, (list, tuple)) else (tuple(size),),
                      "randint")
    d = as_dtype(dtype) if dtype is not None else backend.int64
    host = _draw(generator, "integers", low, high, size=shape).astype(d.np, copy=False)
    dev = as_device(device)
    return _wrap(host if dev.type == "cpu" else backend.to_device(host, dev))


def randperm(n: int, *, generator=None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0..n-1.

    Example:
        >>> import chainrule
        >>> sorted(chainrule.randperm(4).tolist())
        [0, 1, 2, 3]
    """
    d = as_dtype(dtype) if dtype is not None else backend.int64
    host = _draw(generator, "permutation", n).astype(d.np)
    dev = as_device(device)
    return _wrap(host if dev.type == "cpu" else backend.to_device(host, dev))


def arange(start, end=None, step=1, *, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, end); int64 for integer arguments, else float.

    Example:
        >>> import chainrule
        >>> chainrule.arange(1, 2, 0.25)
        tensor([1.0000, 1.2500, 1.5000, 1.7500])
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
        d = backend.int64 if ints else backend.default_float()
    else:
        d = as_dtype(dtype)
    xp = as_device(device).xp
    return _finish(xp.arange(start, end, step).astype(d.np), requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from start to end inclusive.

    Example:
        >>> import chainrule
        >>> chainrule.linspace(0, 1, 3)
        tensor([0.0000, 0.5000, 1.0000])
    """
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    d = as_dtype(dtype) if dtype is not None else backend.default_float()
    xp = as_device(device).xp
    return _finish(xp.linspace(start, end, steps).astype(d.np), requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None,
        requires_grad: bool = False) -> Tensor:
    """Identity matrix (n x m).

    Example:
        >>> import chainrule
        >>> chainrule.eye(2)
        tensor([[1., 0.],
                [0., 1.]])
    """
    d = as_dtype(dtype) if dtype is not None else backend.default_float()
    xp = as_device(device).xp
    return _finish(xp.eye(n, m, dtype=d.np), requires_grad)


def from_numpy(ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array (dtype kept).

    Example:
        >>> import numpy as np, chainrule
        >>> a = np.zeros(2); t = chainrule.from_numpy(a); a[0] = 5; t
        tensor([5., 0.], dtype=chainrule.float64)
    """
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(ndarray).__name__}")
    backend.from_numpy_dtype(ndarray.dtype)
    return _wrap(ndarray)


def from_dlpack(ext) -> Tensor:
    """A tensor sharing memory with any DLPack source (an object with ``__dlpack__`` such as a
    NumPy array, a PyTorch, JAX or CuPy tensor, or a raw DLPack capsule), as torch.from_dlpack.

    Zero-copy: a write on either side is seen by the other. Strides are kept (a non-contiguous
    source gives a non-contiguous tensor); a read-only source gives a tensor that refuses
    in-place writes. A capsule can be consumed once.

    Example:
        >>> import numpy as np, chainrule
        >>> a = np.zeros(3, dtype=np.float32)
        >>> t = chainrule.from_dlpack(a); t[1] = 2.0; a
        array([0., 2., 0.], dtype=float32)
    """
    if isinstance(ext, Tensor):
        return ext
    from ..backend.dlpack import array_from_dlpack  # noqa: PLC0415

    arr = array_from_dlpack(ext)
    try:
        backend.from_numpy_dtype(arr.dtype)
    except TypeError as e:
        raise TypeError(f"from_dlpack: {e}") from None
    return _wrap(arr)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor(), but shares memory with a NumPy array or tensor when it can.

    Example:
        >>> import chainrule
        >>> chainrule.as_tensor([1, 2]).dtype
        chainrule.int64
    """
    from ..tensor import tensor  # noqa: PLC0415

    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    if isinstance(data, np.ndarray) and device in (None, "cpu") and (
            dtype is None or as_dtype(dtype).np == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)
