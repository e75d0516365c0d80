"""PyTorch's ``torch.utils.data.sampler``: the names of :mod:`chainrule.data.sampler`."""

from ...data.sampler import *  # noqa: F403
from ...data.sampler import __all__  # noqa: F401
