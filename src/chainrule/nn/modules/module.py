"""PyTorch's ``torch.nn.modules.module``: the same classes as ``chainrule.nn``."""

from .. import Module

__all__ = [
    "Module",
]
