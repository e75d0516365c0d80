"""PyTorch's ``torch.cuda`` names, answered for chainrule's CUDA backend (CuPy).

``is_available()`` is True when CuPy imports and sees a GPU (install the ``gpu`` extra). The
random numbers of every device come from chainrule's one default generator, drawn on the host
(so a seed gives the same values on CPU and GPU): there is no separate CUDA generator, and
``manual_seed``/``manual_seed_all``/``seed``/``seed_all`` are accepted and change nothing,
as PyTorch silently ignores them without CUDA; seed with ``chainrule.manual_seed``.
(``torch.cuda.amp`` is ``chainrule.amp``'s, not here.)

Example:
    >>> import chainrule
    >>> chainrule.cuda.is_available() in (True, False)
    True
    >>> chainrule.cuda.manual_seed_all(0)  # no separate CUDA generator: nothing to seed
"""

from __future__ import annotations

from .. import backend

__all__ = ["current_device", "device_count", "empty_cache", "get_device_name", "is_available",
           "is_initialized", "manual_seed", "manual_seed_all", "memory_allocated", "seed",
           "seed_all", "set_device", "synchronize"]


def is_available() -> bool:
    """True when CuPy is installed and sees at least one NVIDIA GPU."""
    return backend.cuda_available()


def is_initialized() -> bool:
    """True once CuPy has been imported and found a GPU."""
    return backend._cupy is not None


def device_count() -> int:
    """The number of GPUs CuPy sees (0 without CUDA).

    Example:
        >>> import chainrule
        >>> chainrule.cuda.device_count() >= 0
        True
    """
    if not is_available():
        return 0
    return int(backend.cupy().cuda.runtime.getDeviceCount())


def _need_cuda(what: str):
    if not is_available():
        raise RuntimeError(f"chainrule.cuda.{what}: no CUDA device is available (chainrule runs "
                           "on CUDA through CuPy: install the 'gpu' extra on a machine with an "
                           "NVIDIA GPU); check chainrule.cuda.is_available() first")
    return backend.cupy()


def current_device() -> int:
    """The index of the current GPU."""
    return int(_need_cuda("current_device").cuda.runtime.getDevice())


def set_device(device) -> None:
    """Make ``device`` (an index, ``"cuda:N"`` or a Device) the current GPU."""
    cp = _need_cuda("set_device")
    index = device if isinstance(device, int) else backend.as_device(device).index
    cp.cuda.Device(index or 0).use()


def get_device_name(device=None) -> str:
    """The GPU's name."""
    cp = _need_cuda("get_device_name")
    index = current_device() if device is None else (
        device if isinstance(device, int) else backend.as_device(device).index)
    name = cp.cuda.runtime.getDeviceProperties(index)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize(device=None) -> None:
    """Wait for all work queued on the GPU to finish (as PyTorch, an error without CUDA)."""
    cp = _need_cuda("synchronize")
    cp.cuda.Device(None if device is None else (
        device if isinstance(device, int) else backend.as_device(device).index)).synchronize()


def empty_cache() -> None:
    """Return CuPy's cached GPU memory blocks to the driver (nothing to do without CUDA)."""
    if is_initialized():
        backend.cupy().get_default_memory_pool().free_all_blocks()


def memory_allocated(device=None) -> int:
    """Bytes of GPU memory held by CuPy's memory pool for arrays (0 without CUDA)."""
    if not is_initialized():
        return 0
    return int(backend.cupy().get_default_memory_pool().used_bytes())


def manual_seed(seed: int) -> None:
    """Accepted and ignored: all devices draw from the default generator (see the module
    docstring); use ``chainrule.manual_seed``."""


def manual_seed_all(seed: int) -> None:
    """Accepted and ignored (see :func:`manual_seed`)."""


def seed() -> None:
    """Accepted and ignored (see :func:`manual_seed`)."""


def seed_all() -> None:
    """Accepted and ignored (see :func:`manual_seed`)."""
