"""Data loading: datasets, samplers, DataLoader, and the bundled handwritten digits.

Names and behaviour follow PyTorch's ``torch.utils.data``, worker processes included.

Example:
    >>> import chainrule
    >>> from chainrule.data import DataLoader, digits_split
    >>> train, test = digits_split()
    >>> loader = DataLoader(train, batch_size=64, shuffle=True,
    ...                     generator=chainrule.Generator().manual_seed(0))
    >>> x, y = next(iter(loader))
    >>> x.shape, y.shape, len(loader)
    ((64, 64), (64,), 23)
"""

from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from .digits import digits_split, load_digits
from .distributed import DistributedSampler
from .sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)
from .worker import WorkerInfo, get_worker_info

__all__ = [
    "BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler",
    "IterableDataset",
    "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
    "TensorDataset", "WeightedRandomSampler", "WorkerInfo", "default_collate", "default_convert",
    "digits_split", "get_worker_info", "load_digits", "random_split",
]
