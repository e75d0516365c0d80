"""DLPack import at the array level: any object with ``__dlpack__`` (or a raw capsule) becomes a
NumPy array (CPU) or a CuPy array (CUDA) that shares its memory.

Strides and read-only flags travel with the data (NumPy's importer keeps them). A raw capsule
(``torch.utils.dlpack.to_dlpack``) can be consumed once: the second import raises a clear error.

Example:
    >>> import numpy
    >>> from chainrule.backend.dlpack import array_from_dlpack
    >>> a = numpy.arange(3.0)
    >>> b = array_from_dlpack(a); b[0] = 7.0; a
    array([7., 1., 2.])
"""

from __future__ import annotations

import ctypes

import numpy as np

# DLDeviceType codes (dlpack.h)
_CPU, _CUDA, _CUDA_HOST, _ROCM = 1, 2, 3, 10
_DEVICE_NAMES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
                 9: "vpi", 10: "rocm", 11: "rocm_host", 13: "cuda_managed", 14: "oneapi"}

_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Capsule:
    """Presents a raw DLPack capsule as an object with ``__dlpack__`` (what importers take)."""

    def __init__(self, capsule):
        name = _capsule_name(capsule)
        if name in (b"used_dltensor", b"used_dltensor_versioned"):
            raise BufferError("from_dlpack: this DLPack capsule was already consumed (a capsule "
                              "can be imported only once); export the source again with "
                              "__dlpack__() / to_dlpack()")
        if name not in (b"dltensor", b"dltensor_versioned"):
            raise TypeError(f"from_dlpack: a capsule named {name!r} is not a DLPack tensor")
        ptr = _capsule_pointer(capsule, name)
        # DLManagedTensor starts with DLTensor {void *data; DLDevice device; ...};
        # DLManagedTensorVersioned puts {DLPackVersion version; void *manager_ctx; void *deleter;
        # uint64 flags} before it.
        offset = ctypes.sizeof(ctypes.c_void_p)
        if name == b"dltensor_versioned":
            offset += 8 + 2 * ctypes.sizeof(ctypes.c_void_p) + 8
        dev = (ctypes.c_int32 * 2).from_address(ptr + offset)
        self._device = (int(dev[0]), int(dev[1]))
        self._capsule = capsule

    def __dlpack__(self, *args, **kwargs):
        return self._capsule

    def __dlpack_device__(self):
        return self._device


def is_capsule(obj) -> bool:
    """True for a PyCapsule (what ``torch.utils.dlpack.to_dlpack`` returns)."""
    return type(obj).__name__ == "PyCapsule"


def array_from_dlpack(obj):
    """A NumPy or CuPy array sharing memory with ``obj`` (``__dlpack__`` object or capsule)."""
    if is_capsule(obj):
        obj = _Capsule(obj)
    elif not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack: {type(obj).__name__} has no __dlpack__ method and is not a "
                        "DLPack capsule")
    try:
        dev_type, dev_id = obj.__dlpack_device__()
    except AttributeError:
        raise TypeError(f"from_dlpack: {type(obj).__name__} has __dlpack__ but no "
                        "__dlpack_device__") from None
    dev_type = int(dev_type)
    if dev_type in (_CPU, _CUDA_HOST):
        importer = np.from_dlpack
    elif dev_type == _CUDA:
        from . import cupy  # noqa: PLC0415 - the package's lazy CuPy import

        importer = cupy().from_dlpack
    else:
        raise TypeError(f"from_dlpack: {type(obj).__name__} lives on a "
                        f"{_DEVICE_NAMES.get(dev_type, f'type-{dev_type}')} device (id {dev_id}); "
                        "chainrule takes cpu and cuda data")
    try:
        return importer(obj)
    except (RuntimeError, TypeError, ValueError, BufferError) as e:
        if "dtype" in str(e).lower() or "data type" in str(e).lower():
            raise TypeError(f"from_dlpack: the {type(obj).__name__}'s dtype has no NumPy/CuPy "
                            f"equivalent ({e}); convert it first (for bfloat16: .float())") from e
        raise
