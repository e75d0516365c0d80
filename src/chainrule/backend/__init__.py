"""The one place that chooses between NumPy (CPU) and CuPy (NVIDIA GPU).

Everything else in chainrule asks this module for ``xp`` (the array module of an
array or device), for dtypes and for devices, and never imports numpy or cupy by
name. CuPy is imported lazily, the first time a CUDA device is asked for.

Example:
    >>> from chainrule.backend import Device, get_array_module
    >>> Device("cpu")
    device(type='cpu')
    >>> import numpy
    >>> get_array_module(numpy.zeros(3)) is numpy
    True
"""

from __future__ import annotations

import numpy as np

from . import memory
from .dtypes import (
    DType,
    as_dtype,
    bfloat16_dtype,
    bool_,
    default_float,
    float16,
    float32,
    float64,
    from_numpy_dtype,
    int8,
    int16,
    int32,
    int64,
    is_low_precision,
    result_type,
    set_default_dtype,
    uint8,
)

__all__ = [
    "DType", "Device", "as_device", "as_dtype", "bfloat16_dtype", "bool_", "cupy", "default_float",
    "device_of", "float16", "float32", "float64", "from_numpy_dtype", "get_array_module",
    "int8", "int16", "int32", "int64", "is_array", "is_low_precision", "np", "result_type",
    "set_default_dtype", "to_device", "uint8",
]

memory.keep_freed_memory()


def __getattr__(name):  # backend.bfloat16, made when first asked for (ml_dtypes is slow to load)
    if name == "bfloat16":
        from . import dtypes  # noqa: PLC0415

        return dtypes.bfloat16
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_cupy = None
_cupy_error: BaseException | None = None


def cupy():
    """Return the cupy module, importing it on first use; raise a clear error if absent."""
    global _cupy, _cupy_error
    if _cupy is None:
        if _cupy_error is not None:
            raise RuntimeError(f"CUDA device requested but CuPy is unavailable: {_cupy_error}")
        try:
            import cupy as cp  # noqa: PLC0415 - lazy by design

            cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # ImportError, or no driver/device
            _cupy_error = e
            raise RuntimeError(
                "CUDA device requested but CuPy is unavailable "
                f"({type(e).__name__}: {e}); install chainrule[gpu] on a machine with a GPU"
            ) from e
        _cupy = cp
    return _cupy


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        cupy()
        return True
    except RuntimeError:
        return False


class Device:
    """A device: ``Device("cpu")``, ``Device("cuda")`` (current GPU) or ``Device("cuda:1")``.

    Example:
        >>> Device("cuda:1").index
        1
    """

    __slots__ = ("index", "type")

    def __init__(self, spec: str | Device = "cpu", index: int | None = None):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if idx:
            if not idx.isdigit():
                raise ValueError(f"bad device index in {spec!r}")
            index = int(idx)
        if kind == "cpu" and index not in (None, 0):
            raise ValueError(f"cpu has no index {index}")
        self.type = kind
        self.index = None if kind == "cpu" else (0 if index is None else index)

    def __eq__(self, other):
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        if self.type == "cpu":
            return "device(type='cpu')"
        return f"device(type='cuda', index={self.index})"

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    @property
    def xp(self):
        """The array module for this device."""
        return np if self.type == "cpu" else cupy()


CPU = Device("cpu")


def as_device(device) -> Device:
    """Normalise None / str / Device to a Device (None means cpu)."""
    if device is None:
        return CPU
    if isinstance(device, Device):
        return device
    return Device(device)


def is_array(a) -> bool:
    """True for a numpy or cupy ndarray."""
    if type(a) is np.ndarray:
        return True
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def get_array_module(a):
    """numpy for numpy arrays and Python/NumPy scalars, cupy for cupy arrays."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy
    return np


def device_of(a) -> Device:
    """The Device an array lives on."""
    if type(a) is np.ndarray:
        return CPU
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return Device("cuda", a.device.id)
    return CPU


def to_device(a, device: Device):
    """Copy an array to ``device`` (no copy when it is already there)."""
    src = device_of(a)
    if src == device:
        return a
    if device.type == "cpu":
        return a.get()
    cp = cupy()
    with cp.cuda.Device(device.index):
        return cp.asarray(a)
