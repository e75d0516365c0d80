"""PyTorch's ``torch.nn.modules.dropout``: the same classes as ``chainrule.nn``."""

from .. import Dropout, Dropout1d, Dropout2d, Dropout3d

__all__ = [
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
]
