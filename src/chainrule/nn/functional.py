"""Functional forms of layers, activations and losses (PyTorch's ``torch.nn.functional``).

Example:
    >>> import chainrule, chainrule.nn.functional as F
    >>> F.relu(chainrule.tensor([-1.0, 1.0]))
    tensor([0., 1.])
"""

from ..ops.nn import *  # noqa: F401,F403
from ..ops.nn import __all__ as _nn_all
from ..ops.shape import pad  # noqa: F401

__all__ = [*_nn_all, "pad"]
