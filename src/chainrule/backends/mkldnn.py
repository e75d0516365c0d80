"""``torch.backends.mkldnn``: not used by chainrule, so ``is_available()`` is False."""

from __future__ import annotations

__all__ = ["is_available", "is_built"]


def is_available() -> bool:
    """False: chainrule does not use mkldnn."""
    return False


def is_built() -> bool:
    """False: chainrule does not use mkldnn."""
    return False
