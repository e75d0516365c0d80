"""PyTorch's ``torch.nn.modules.container``: the same classes as ``chainrule.nn``."""

from .. import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential

__all__ = [
    "ModuleDict", "ModuleList", "ParameterDict", "ParameterList", "Sequential",
]
