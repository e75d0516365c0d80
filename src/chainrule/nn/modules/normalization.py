"""PyTorch's ``torch.nn.modules.normalization``: the same classes as ``chainrule.nn``."""

from .. import GroupNorm, LayerNorm, RMSNorm

__all__ = [
    "GroupNorm", "LayerNorm", "RMSNorm",
]
