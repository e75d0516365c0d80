"""PyTorch's ``torch.nn.modules.flatten``: the same classes as ``chainrule.nn``."""

from .. import Flatten, Unflatten

__all__ = [
    "Flatten", "Unflatten",
]
