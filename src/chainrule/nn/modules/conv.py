"""PyTorch's ``torch.nn.modules.conv``: the same classes as ``chainrule.nn``."""

from .. import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d

__all__ = [
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
]
