"""``torch.backends.cudnn``: chainrule does not use cuDNN; the flags are recorded and change
nothing (chainrule's kernels are deterministic, and nothing is auto-tuned)."""

from __future__ import annotations

__all__ = ["allow_tf32", "benchmark", "deterministic", "enabled", "is_available", "version"]

enabled = True
benchmark = False
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    """False: chainrule does not use cuDNN."""
    return False


def version():
    """None: no cuDNN is used."""
    return None
