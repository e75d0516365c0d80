"""DistributedSampler: each rank's share of a dataset, with PyTorch's semantics.

Every rank builds the same epoch order (a permutation seeded by ``seed + epoch`` when
shuffling, else ``0 .. n-1``), pads it by repeating its start until its length divides by the
number of replicas (or, with ``drop_last``, cuts the tail), and takes every
``num_replicas``-th index starting at ``rank``. Call ``set_epoch(epoch)`` at the start of each
epoch so that the shuffle changes between epochs (it is the same on every rank).

Example:
    >>> from chainrule.data import DistributedSampler
    >>> [list(DistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False))
    ...  for r in range(2)]
    [[0, 2, 4], [1, 3, 0]]
    >>> [list(DistributedSampler(range(5), num_replicas=2, rank=r, shuffle=False,
    ...                          drop_last=True)) for r in range(2)]
    [[0, 2], [1, 3]]
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .sampler import _ArraySampler, _check_bool


class DistributedSampler(_ArraySampler):
    """Restrict data loading to this rank's share of the dataset (``torch.utils.data.
    distributed.DistributedSampler``).

    Args:
        dataset: a map-style dataset (only its length is used).
        num_replicas, rank: the number of ranks and this one (default: from the initialized
            ``chainrule.distributed`` process group).
        shuffle: permute the dataset each epoch (seeded by ``seed + epoch``, same on every
            rank).
        seed: the shuffle's seed; must be the same on every rank.
        drop_last: drop the tail so every rank gets ``floor(n / num_replicas)`` samples
            instead of padding with repeated samples to ``ceil(n / num_replicas)``.
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if num_replicas is None or rank is None:
            from ..distributed.group import current  # noqa: PLC0415 - only when asked

            comm = current("DistributedSampler")
            num_replicas = comm.size if num_replicas is None else num_replicas
            rank = comm.rank if rank is None else rank
        for name, v in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_)):
                raise TypeError(f"DistributedSampler: {name} must be an int, got {v!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the "
                             f"interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = _check_bool(shuffle, "shuffle", "DistributedSampler")
        self.drop_last = _check_bool(drop_last, "drop_last", "DistributedSampler")
        self.seed = int(seed)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which (with ``seed``) fixes the shuffle of the next iteration."""
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, (bool, np.bool_)):
            raise TypeError(f"DistributedSampler.set_epoch: epoch must be an int, got {epoch!r}")
        self.epoch = int(epoch)

    def _index_array(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n, dtype=np.int64)
        if not self.drop_last:
            pad = self.total_size - n
            if pad and n:
                order = np.concatenate([order, np.resize(order, pad)])
        else:
            order = order[:self.total_size]
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64, copy=False)

    def __len__(self) -> int:
        return self.num_samples
