"""PyTorch's ``torch.nn.modules.batchnorm``: the same classes as ``chainrule.nn``."""

from .. import BatchNorm1d, BatchNorm2d

__all__ = [
    "BatchNorm1d", "BatchNorm2d",
]
