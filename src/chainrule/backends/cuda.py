"""``torch.backends.cuda``: ``is_built()`` and the ``matmul`` precision flags (recorded, no
effect: chainrule's CUDA products go through CuPy, see ``chainrule.backends``)."""

from __future__ import annotations

from types import SimpleNamespace

from .. import backend

__all__ = ["enable_flash_sdp", "enable_math_sdp", "enable_mem_efficient_sdp", "is_built",
           "matmul"]

matmul = SimpleNamespace(allow_tf32=False, allow_fp16_reduced_precision_reduction=True,
                         allow_bf16_reduced_precision_reduction=True)


def is_built() -> bool:
    """True when chainrule can run on CUDA here (CuPy installed and a GPU seen)."""
    return backend.cuda_available()


def enable_flash_sdp(enabled: bool) -> None:
    """Accepted; chainrule's attention has one implementation on each device."""


def enable_mem_efficient_sdp(enabled: bool) -> None:
    """Accepted; see :func:`enable_flash_sdp`."""


def enable_math_sdp(enabled: bool) -> None:
    """Accepted; see :func:`enable_flash_sdp`."""
