"""PyTorch's ``torch.accelerator``: the one accelerator chainrule knows is CUDA (through CuPy).

Example:
    >>> import chainrule
    >>> chainrule.accelerator.current_accelerator() in (None, chainrule.device("cuda"))
    True
"""

from __future__ import annotations

from . import cuda
from .backend import Device

__all__ = ["current_accelerator", "device_count", "is_available", "synchronize"]


def is_available() -> bool:
    """True when a CUDA GPU is usable."""
    return cuda.is_available()


def current_accelerator(check_available: bool = False) -> Device | None:
    """``device("cuda")`` when a GPU is usable, else None."""
    return Device("cuda") if cuda.is_available() else None


def device_count() -> int:
    """The number of GPUs (0 without one)."""
    return cuda.device_count()


def synchronize(device=None) -> None:
    """Wait for the GPU's queued work (nothing to wait for without one)."""
    if cuda.is_available():
        cuda.synchronize(device)
