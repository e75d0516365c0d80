"""Utilities: activation checkpointing (:func:`checkpoint`, :func:`checkpoint_sequential`).

Example:
    >>> import chainrule
    >>> from chainrule.utils import checkpoint
    >>> x = chainrule.ones(2, requires_grad=True)
    >>> checkpoint(lambda t: (t * 3).sum(), x).backward(); x.grad
    tensor([3., 3.])
"""

from . import data, tensorboard  # torch.utils.data (= chainrule.data), torch.utils.tensorboard
from .checkpoint import checkpoint, checkpoint_sequential

__all__ = ["checkpoint", "checkpoint_sequential", "data", "tensorboard"]
