"""PyTorch's ``torch.utils.data``: the names of :mod:`chainrule.data` (the same objects), so
``from chainrule.utils.data import DataLoader`` works as in PyTorch; ``dataloader``,
``dataset`` and ``sampler`` mirror PyTorch's submodules.

Example:
    >>> import chainrule.utils.data, chainrule.data
    >>> chainrule.utils.data.DataLoader is chainrule.data.DataLoader
    True
"""

from ...data import *
from ...data import __all__
from . import dataloader, dataset, sampler
