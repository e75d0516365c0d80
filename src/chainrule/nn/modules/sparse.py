"""PyTorch's ``torch.nn.modules.sparse``: the same classes as ``chainrule.nn``."""

from .. import Embedding

__all__ = [
    "Embedding",
]
