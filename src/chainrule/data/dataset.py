"""Datasets: map-style (``__getitem__``/``__len__``) and iterable, and ways to combine them.

A map-style dataset is anything with ``__getitem__(index)`` and ``__len__()``; subclass
:class:`Dataset` to get ``+`` (concatenation). An iterable dataset yields samples from
``__iter__`` (a stream: a file read line by line, a generator). PyTorch's ``torch.utils.data``
names and semantics are kept.

Example:
    >>> import chainrule
    >>> from chainrule.data import TensorDataset, random_split
    >>> ds = TensorDataset(chainrule.arange(10), chainrule.arange(10) * 2)
    >>> x, y = ds[3]
    >>> int(x), int(y)
    (3, 6)
    >>> a, b = random_split(ds, [0.8, 0.2], generator=chainrule.Generator().manual_seed(0))
    >>> len(a), len(b)
    (8, 2)
"""

from __future__ import annotations

import bisect
import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import random as _random
from ..errors import ShapeError
from ..tensor import Tensor

__all__ = [
    "ChainDataset", "ConcatDataset", "Dataset", "IterableDataset", "Subset", "TensorDataset",
    "random_split",
]


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__`` and ``__len__``.

    ``a + b`` concatenates two datasets (a :class:`ConcatDataset`).

    Example:
        >>> from chainrule.data import Dataset
        >>> class Squares(Dataset):
        ...     def __len__(self):
        ...         return 4
        ...     def __getitem__(self, i):
        ...         return i * i
        >>> ds = Squares() + Squares()
        >>> len(ds), ds[5]
        (8, 1)
    """

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """Base class of datasets that are streams: subclasses define ``__iter__``.

    A DataLoader over an iterable dataset batches the samples in the order ``__iter__`` gives
    them (no sampler, no shuffling). ``a + b`` chains two streams (a :class:`ChainDataset`).

    Example:
        >>> from chainrule.data import IterableDataset
        >>> class Count(IterableDataset):
        ...     def __init__(self, n):
        ...         self.n = n
        ...     def __iter__(self):
        ...         return iter(range(self.n))
        >>> list(Count(2) + Count(3))
        [0, 1, 0, 1, 2]
    """

    def __add__(self, other: IterableDataset) -> ChainDataset:
        return ChainDataset([self, other])


def _first_dim(t: Tensor, i: int) -> int:
    if not isinstance(t, Tensor):
        hint = (" (wrap it with chainrule.from_numpy)" if isinstance(t, np.ndarray) else "")
        raise TypeError(f"TensorDataset: argument {i} is a {type(t).__module__}."
                        f"{type(t).__name__}, not a chainrule Tensor{hint}")
    if t.ndim == 0:
        raise ShapeError(f"TensorDataset: tensor {i} is 0-dimensional (shape ()); every tensor "
                         "needs a first dimension that indexes the samples")
    return t.shape[0]


class TensorDataset(Dataset):
    """Samples are the rows of tensors that share their first dimension: ``ds[i]`` is
    ``tuple(t[i] for t in tensors)``.

    A DataLoader over a TensorDataset (or a Subset of one) with the default collate function
    builds each batch with one fancy-index per tensor instead of stacking samples one by one.

    Args:
        *tensors: chainrule tensors with equal ``shape[0]``.

    Example:
        >>> import chainrule
        >>> from chainrule.data import TensorDataset
        >>> ds = TensorDataset(chainrule.zeros(5, 3), chainrule.arange(5))
        >>> len(ds), ds[4][0].shape, int(ds[4][1])
        (5, (3,), 4)
    """

    def __init__(self, *tensors: Tensor):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        sizes = [_first_dim(t, i) for i, t in enumerate(tensors)]
        if any(s != sizes[0] for s in sizes):
            detail = ", ".join(f"tensor {i}: {s}" for i, s in enumerate(sizes))
            raise ShapeError(f"TensorDataset: size mismatch between tensors; their first "
                             f"dimensions must be equal, got {detail}")
        self.tensors = tuple(tensors)

    def __getitem__(self, index) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __repr__(self):
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return f"TensorDataset({shapes})"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order.

    Args:
        dataset: a map-style dataset.
        indices: a sequence of indices into ``dataset``.

    Example:
        >>> from chainrule.data import Subset
        >>> s = Subset(list("abcdef"), [5, 0, 2])
        >>> len(s), s[0], s[2]
        (3, 'f', 'c')
    """

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self):
        return f"Subset({self.dataset!r}, {len(self.indices)} indices)"


class ConcatDataset(Dataset):
    """Map-style datasets one after another: index ``i`` of the first ``len(d0)`` samples is
    ``d0[i]``, then ``d1[i - len(d0)]``, and so on.

    Args:
        datasets: a non-empty iterable of map-style datasets.

    Example:
        >>> from chainrule.data import ConcatDataset
        >>> ds = ConcatDataset([[1, 2], [3], [4, 5]])
        >>> len(ds), ds[2], ds[-1], ds.cumulative_sizes
        (5, 3, 5, [2, 3, 5])
    """

    def __init__(self, datasets: Iterable):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for i, d in enumerate(self.datasets):
            if isinstance(d, IterableDataset):
                raise TypeError(f"ConcatDataset does not support IterableDataset (dataset {i} "
                                f"is a {type(d).__name__}); use ChainDataset")
        sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            sizes.append(total)
        self.cumulative_sizes = sizes

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int):
        n = len(self)
        if not isinstance(idx, numbers.Integral):
            raise TypeError(f"ConcatDataset indices must be integers, got {type(idx).__name__}")
        if idx < 0:
            if -idx > n:
                raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
            idx += n
        if idx >= n:
            raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[d - 1] if d > 0 else 0
        return self.datasets[d][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets one after another (the stream of the first, then the second ...).

    Example:
        >>> from chainrule.data import ChainDataset
        >>> list(ChainDataset([range(2), range(3)]))
        [0, 1, 0, 1, 2]
    """

    def __init__(self, datasets: Iterable):
        self.datasets = list(datasets)

    def __iter__(self) -> Iterator:
        for d in self.datasets:
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


def _split_lengths(lengths: Sequence, n: int) -> list[int]:
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths must not be empty")
    integral = all(isinstance(x, numbers.Integral) for x in lengths)
    fractional = (not integral and all(isinstance(x, numbers.Real) for x in lengths)
                  and math.isclose(sum(lengths), 1.0))
    if fractional:
        if any(not 0 <= x <= 1 for x in lengths):
            raise ValueError(f"random_split: fractions must lie in [0, 1], got {lengths}")
        out = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(out)):  # leftovers go round-robin, as in PyTorch
            out[i % len(out)] += 1
        for i, m in enumerate(out):
            if m == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0; this split "
                              "will be empty", stacklevel=3)
        return out
    for x in lengths:
        if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 0:
            raise ValueError(f"random_split: lengths must be non-negative integers or fractions "
                             f"summing to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: the lengths {lengths} sum to {sum(lengths)}, but the "
                         f"dataset has {n} samples")
    return [int(x) for x in lengths]


def random_split(dataset, lengths: Sequence, generator: Any = None) -> list[Subset]:
    """Split a dataset into non-overlapping random subsets of the given lengths.

    Args:
        dataset: a map-style dataset.
        lengths: integer lengths summing to ``len(dataset)``, or fractions summing to 1
            (``floor(n * f)`` each, the leftover samples handed out one by one from the first
            split on, as PyTorch does).
        generator: a ``chainrule.Generator`` for the permutation (the default generator when
            None, so ``chainrule.manual_seed`` fixes the split).

    Example:
        >>> import chainrule
        >>> from chainrule.data import random_split
        >>> g = chainrule.Generator().manual_seed(1)
        >>> parts = random_split(range(10), [3, 7], generator=g)
        >>> [len(p) for p in parts], sorted(list(parts[0]) + list(parts[1])) == list(range(10))
        ([3, 7], True)
    """
    n = len(dataset)
    sizes = _split_lengths(lengths, n)
    perm = _random._gen(_check_generator(generator, "random_split")).permutation(n)
    out = []
    start = 0
    for m in sizes:
        out.append(Subset(dataset, perm[start:start + m].tolist()))
        start += m
    return out


def _check_generator(generator, who: str):
    if generator is not None and not isinstance(generator, _random.Generator):
        raise TypeError(f"{who}: generator must be a chainrule.Generator or None, got "
                        f"{type(generator).__name__}")
    return generator
