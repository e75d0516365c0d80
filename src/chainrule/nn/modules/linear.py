"""PyTorch's ``torch.nn.modules.linear``: the same classes as ``chainrule.nn``."""

from .. import Bilinear, Identity, Linear

__all__ = [
    "Bilinear", "Identity", "Linear",
]
