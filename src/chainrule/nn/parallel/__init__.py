"""Data parallelism over ``chainrule.distributed`` (PyTorch's ``torch.nn.parallel``).

Example:
    >>> from chainrule.nn.parallel import DistributedDataParallel
    >>> DistributedDataParallel.__name__
    'DistributedDataParallel'
"""

from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
