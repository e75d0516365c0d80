"""PyTorch's ``torch.nn.modules.upsampling``: the same classes as ``chainrule.nn``."""

from .. import Upsample

__all__ = [
    "Upsample",
]
