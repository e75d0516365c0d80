"""PyTorch's ``torch.utils.data.dataset``: the names of :mod:`chainrule.data.dataset`."""

from ...data.dataset import *  # noqa: F403
from ...data.dataset import __all__  # noqa: F401
