"""PyTorch's ``torch.nn.modules.pooling``: the same classes as ``chainrule.nn``."""

from .. import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "MaxPool1d",
    "MaxPool2d",
]
