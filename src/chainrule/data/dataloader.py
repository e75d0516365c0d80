"""DataLoader: batches from a dataset, in sampler order, through a collate function.

Loading runs in the calling process (PyTorch's ``num_workers=0``). When the dataset is a
:class:`TensorDataset` (or a :class:`Subset` of one, at any depth), the collate function is
the default and no tensor of the dataset requires grad, each batch is built with one
fancy-index per tensor: no Python work per sample. The result equals what the per-sample
path (``dataset[i]`` for each index, then ``default_collate``) would give.

Example:
    >>> import chainrule
    >>> from chainrule.data import DataLoader, TensorDataset
    >>> ds = TensorDataset(chainrule.arange(10).float(), chainrule.arange(10))
    >>> loader = DataLoader(ds, batch_size=4, shuffle=True,
    ...                     generator=chainrule.Generator().manual_seed(0))
    >>> len(loader), [tuple(x.shape) for x, y in loader]
    (3, [(4,), (4,), (2,)])
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..tensor import _wrap
from .collate import default_collate, default_convert
from .dataset import IterableDataset, Subset, TensorDataset, _check_generator
from .sampler import BatchSampler, RandomSampler, SequentialSampler, _ArraySampler

__all__ = ["DataLoader"]


def _tensor_source(dataset):
    """(tensors, index_map or None) when batches can be fancy-indexed straight out of the
    tensors of a TensorDataset under zero or more Subsets; None otherwise."""
    maps = []
    while type(dataset) is Subset:
        idx = np.asarray(dataset.indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            return None
        maps.append(idx.astype(np.int64, copy=False))
        dataset = dataset.dataset
    if type(dataset) is not TensorDataset:
        return None
    if any(t._rg for t in dataset.tensors):
        return None
    index_map = None
    for m in reversed(maps):  # innermost Subset first
        index_map = m if index_map is None else index_map[m]
    return dataset.tensors, index_map


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a map-style dataset (``__getitem__``/``__len__``) or an IterableDataset.
        batch_size: samples per batch; None turns batching off (each sample is passed through
            ``default_convert``).
        shuffle: visit the samples in a new random order each epoch.
        sampler: the order of indices (mutually exclusive with ``shuffle``).
        batch_sampler: yields whole lists of indices (mutually exclusive with ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last``).
        drop_last: drop the last batch when it is short.
        collate_fn: merges a list of samples into a batch (default: ``default_collate``).
        generator: a ``chainrule.Generator`` for shuffling. Without one, each epoch draws its
            seed from chainrule's default generator, so ``chainrule.manual_seed(s)`` fixes
            the order.

    Example:
        >>> import chainrule
        >>> from chainrule.data import DataLoader
        >>> batches = list(DataLoader([{"a": 1}, {"a": 2}, {"a": 3}], batch_size=2))
        >>> batches
        [{'a': tensor([1, 2])}, {'a': tensor([3])}]
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = False,
                 sampler: Iterable | None = None, batch_sampler: Iterable | None = None,
                 drop_last: bool = False, collate_fn: Callable[[list], Any] | None = None,
                 generator=None):
        if batch_size is not None and (not isinstance(batch_size, numbers.Integral)
                                       or isinstance(batch_size, bool) or batch_size <= 0):
            raise ValueError(f"DataLoader: batch_size should be a positive integer or None, got "
                             f"{batch_size!r}")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise ValueError(f"DataLoader: drop_last should be a boolean value, got {drop_last!r}")
        if shuffle not in (None, False, True):
            raise ValueError(f"DataLoader: shuffle should be a boolean value, got {shuffle!r}")
        shuffle = bool(shuffle)
        self.generator = _check_generator(generator, "DataLoader")
        self.dataset = dataset
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler),
                                ("batch_sampler", batch_sampler)):
                if value:
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                     f"{name} option, but got {name}={value!r}")
        else:
            if sampler is not None and shuffle:
                raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
            if batch_sampler is not None:
                if batch_size != 1 or shuffle or sampler is not None or drop_last:
                    raise ValueError("DataLoader: batch_sampler option is mutually exclusive "
                                     "with batch_size, shuffle, sampler, and drop_last")
                batch_size = None
            if sampler is None:
                sampler = (RandomSampler(dataset, generator=self.generator) if shuffle
                           else SequentialSampler(dataset))
        if batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and is "
                             "mutually exclusive with drop_last")
        if (not self._iterable and batch_size is not None and batch_sampler is None):
            batch_sampler = BatchSampler(sampler, batch_size, bool(drop_last))
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable
                                                             and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            if self.drop_last:
                return n // self.batch_size
            return (n + self.batch_size - 1) // self.batch_size
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def __iter__(self) -> Iterator:
        if self._iterable:
            return self._iter_stream()
        if self.batch_sampler is None:
            return (self.collate_fn(self.dataset[i]) for i in self.sampler)
        if self.collate_fn is default_collate:
            source = _tensor_source(self.dataset)
            if source is not None:
                return self._iter_fast(*source)
        return (self.collate_fn([self.dataset[i] for i in b]) for b in self.batch_sampler)

    def _iter_stream(self) -> Iterator:
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def _iter_fast(self, tensors, index_map) -> Iterator[list]:
        bs = self.batch_sampler
        if type(bs) is BatchSampler and isinstance(bs.sampler, _ArraySampler):
            batches = bs._index_batches()
        else:
            batches = bs
        datas = [t._data for t in tensors]
        xps = [get_array_module(a) for a in datas]
        for b in batches:
            idx = b if isinstance(b, np.ndarray) else np.asarray(b)
            if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
                # not plain integer indices: the general path gives the general answer
                yield default_collate([self.dataset[i] for i in b])
                continue
            if index_map is not None:
                idx = index_map[idx]
            yield [_wrap(a[idx] if xp is np else a[xp.asarray(idx)])
                   for a, xp in zip(datas, xps)]

    def __repr__(self):
        return (f"DataLoader(dataset={self.dataset!r}, batch_size={self.batch_size}, "
                f"drop_last={self.drop_last})")
