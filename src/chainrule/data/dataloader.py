"""DataLoader: batches from a dataset, in sampler order, through a collate function.

With ``num_workers=0`` (the default) loading runs in the calling process; ``num_workers > 0``
starts worker processes (``chainrule.data.worker``). In the calling process, when the dataset is a
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

from .. import random as _random
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
        num_workers: 0 loads in the calling process; N > 0 starts N worker processes (see
            ``chainrule.data.worker``: seeding per worker as PyTorch, ``worker_init_fn``,
            :func:`get_worker_info`), which pays off when fetching a sample costs real work.
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: a start method name (``"fork"``, ``"spawn"``,
            ``"forkserver"``) or context; None takes Python's default.
        prefetch_factor: batches in flight per worker (default 2; only with workers).
        persistent_workers: keep the workers (and their dataset copies) between epochs.
        timeout: seconds to wait for a batch from the workers before raising (0: no limit).
        pin_memory: accepted and ignored: pinned host memory speeds host-to-GPU copies in
            PyTorch; chainrule's batches are NumPy arrays on the CPU, so there is nothing to
            pin (move batches with ``.to("cuda")``). ``pin_memory_device`` likewise.
        in_order: batches come in sampler order (False is accepted; they still do).

    Example:
        >>> import chainrule
        >>> from chainrule.data import DataLoader
        >>> batches = list(DataLoader([{"a": 1}, {"a": 2}, {"a": 3}], batch_size=2))
        >>> batches
        [{'a': tensor([1, 2])}, {'a': tensor([3])}]
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = False,
                 sampler: Iterable | None = None, batch_sampler: Iterable | None = None,
                 num_workers: int = 0, collate_fn: Callable[[list], Any] | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True):
        self._set_workers(num_workers, timeout, worker_init_fn, multiprocessing_context,
                          prefetch_factor, persistent_workers, in_order)
        self.pin_memory = bool(pin_memory)  # accepted; a no-op (see the class docstring)
        self.pin_memory_device = pin_memory_device
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

    def _set_workers(self, num_workers, timeout, worker_init_fn, multiprocessing_context,
                     prefetch_factor, persistent_workers, in_order):
        """Check and keep the worker options (PyTorch's rules and messages)."""
        if (not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool)
                or num_workers < 0):
            raise ValueError(f"DataLoader: num_workers option should be a non-negative "
                             f"integer, got {num_workers!r}; use num_workers=0 to disable "
                             "multiprocessing")
        if not isinstance(timeout, numbers.Real) or timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got "
                             f"{timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor option could only be specified in "
                             "multiprocessing; let num_workers > 0 to enable multiprocessing, "
                             "otherwise set prefetch_factor to None")
        if prefetch_factor is None:
            prefetch_factor = 2 if num_workers > 0 else None
        elif (not isinstance(prefetch_factor, numbers.Integral) or prefetch_factor <= 0):
            raise ValueError(f"DataLoader: prefetch_factor should be a positive integer, got "
                             f"{prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"DataLoader: worker_init_fn must be callable, got "
                            f"{type(worker_init_fn).__name__}")
        if multiprocessing_context is not None:
            if num_workers == 0:
                raise ValueError("DataLoader: multiprocessing_context can only be used with "
                                 "multi-process loading (num_workers > 0)")
            if isinstance(multiprocessing_context, str):
                import multiprocessing  # noqa: PLC0415

                methods = multiprocessing.get_all_start_methods()
                if multiprocessing_context not in methods:
                    raise ValueError(f"DataLoader: multiprocessing_context "
                                     f"{multiprocessing_context!r} is not a start method here; "
                                     f"choose from {methods}")
        self.num_workers = int(num_workers)
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = bool(persistent_workers)
        self.in_order = bool(in_order)
        self._pool = None

    def _index_tasks(self) -> Iterator:
        """What each worker task fetches: a batch of indices, or one index unbatched."""
        if self.batch_sampler is None:
            return iter(self.sampler)
        return iter(self.batch_sampler)

    def _iter_workers(self) -> Iterator:
        from . import worker  # noqa: PLC0415

        base_seed = self._base_seed()
        pool = self._pool
        new_epoch = pool is not None
        if pool is None:
            pool = worker._WorkerPool(self, base_seed)
            if self.persistent_workers:
                self._pool = pool
        return worker.iterate(self, pool, new_epoch)

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

    def _base_seed(self) -> int:
        """The workers' base seed, drawn at the start of every epoch from the loader's
        generator (the default one when None), with or without workers, as PyTorch does; so
        the same generator gives the same batches for any num_workers."""
        gen = self.generator
        return int((gen.np if gen is not None else
                    _random.default_generator.np).integers(0, 2 ** 62))

    def __iter__(self) -> Iterator:
        if self.num_workers > 0:
            return self._iter_workers()
        self._base_seed()
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
