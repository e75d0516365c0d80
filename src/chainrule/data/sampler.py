"""Samplers: the order in which a DataLoader visits a map-style dataset.

A sampler is an iterable of indices with a length. The built-in ones also give their whole
epoch as one NumPy index array (``_index_array``), which the DataLoader slices into batches
without a Python loop over samples; iterating them yields the same indices, from the same
random draws.

Randomness: with ``generator=None`` each epoch draws one 63-bit seed from chainrule's default
generator and permutes with a fresh PCG64 seeded by it, so ``chainrule.manual_seed`` makes a
run reproducible; with a ``chainrule.Generator`` the permutation is drawn from it directly
(the same seed gives the same sequence of epochs).

Example:
    >>> import chainrule
    >>> from chainrule.data import BatchSampler, RandomSampler, SequentialSampler
    >>> list(BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False))
    [[0, 1], [2, 3], [4]]
    >>> g = chainrule.Generator().manual_seed(0)
    >>> sorted(RandomSampler(range(5), generator=g)) == [0, 1, 2, 3, 4]
    True
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .. import random as _random
from ..tensor import Tensor
from .dataset import _check_generator

__all__ = [
    "BatchSampler", "RandomSampler", "Sampler", "SequentialSampler", "SubsetRandomSampler",
    "WeightedRandomSampler",
]


def _epoch_rng(generator) -> np.random.Generator:
    """The NumPy generator for one epoch (see the module docstring)."""
    if generator is not None:
        return generator.np
    seed = int(_random.default_generator.np.integers(0, 2 ** 63))
    return np.random.Generator(np.random.PCG64(seed))


class Sampler:
    """Base class of samplers: subclasses define ``__iter__`` (indices) and usually ``__len__``.

    Example:
        >>> from chainrule.data import Sampler
        >>> class Reversed(Sampler):
        ...     def __init__(self, n):
        ...         self.n = n
        ...     def __iter__(self):
        ...         return iter(range(self.n - 1, -1, -1))
        ...     def __len__(self):
        ...         return self.n
        >>> list(Reversed(3))
        [2, 1, 0]
    """


class _ArraySampler(Sampler):
    """A sampler whose epoch is one index array; iteration walks that array."""

    def _index_array(self) -> np.ndarray:
        """One epoch of indices as an int64 array."""
        return np.arange(len(self), dtype=np.int64)

    def _index_chunks(self) -> Iterator[np.ndarray]:
        """One epoch as consecutive int64 arrays (one array unless the sampler is lazy)."""
        yield self._index_array()

    def __iter__(self) -> Iterator[int]:
        for chunk in self._index_chunks():
            yield from chunk.tolist()


class SequentialSampler(_ArraySampler):
    """Indices ``0, 1, ..., len(data_source) - 1`` in order.

    Example:
        >>> from chainrule.data import SequentialSampler
        >>> list(SequentialSampler("abc"))
        [0, 1, 2]
    """

    def __init__(self, data_source):
        self.data_source = data_source

    def _index_array(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data_source)


def _check_bool(value, name: str, who: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {name} should be a boolean value, got {value!r}")
    return bool(value)


def _check_count(value, name: str, who: str) -> int:
    if (not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_))
            or value <= 0):
        raise ValueError(f"{who}: {name} should be a positive integer value, got {value!r}")
    return int(value)


class RandomSampler(_ArraySampler):
    """Random order: a permutation of the dataset each epoch (or ``num_samples`` draws with
    replacement).

    Args:
        data_source: a map-style dataset (only its length is used).
        replacement: draw ``num_samples`` indices uniformly with replacement.
        num_samples: how many indices per epoch (default ``len(data_source)``); without
            replacement and larger than the dataset, whole permutations are concatenated.
        generator: a ``chainrule.Generator``, or None for the default generator.

    Example:
        >>> import chainrule
        >>> from chainrule.data import RandomSampler
        >>> a = list(RandomSampler(range(6), generator=chainrule.Generator().manual_seed(3)))
        >>> b = list(RandomSampler(range(6), generator=chainrule.Generator().manual_seed(3)))
        >>> a == b, sorted(a)
        (True, [0, 1, 2, 3, 4, 5])
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator=None):
        self.data_source = data_source
        self.replacement = _check_bool(replacement, "replacement", "RandomSampler")
        if num_samples is not None:
            _check_count(num_samples, "num_samples", "RandomSampler")
        self._num_samples = num_samples
        self.generator = _check_generator(generator, "RandomSampler")

    @property
    def num_samples(self) -> int:
        """Indices per epoch."""
        if self._num_samples is None:
            return len(self.data_source)
        return int(self._num_samples)

    _CHUNK = 1 << 16  # draws per chunk with replacement: an epoch is drawn lazily

    def _index_chunks(self) -> Iterator[np.ndarray]:
        """The epoch drawn lazily, so that ``num_samples=10**10`` costs nothing up front:
        with replacement, chunks of uniform draws; without, one permutation at a time."""
        n = len(self.data_source)
        m = self.num_samples
        rng = _epoch_rng(self.generator)
        if n == 0:
            if m:
                raise ValueError(f"RandomSampler: cannot draw {m} samples from an empty dataset")
            yield np.zeros(0, dtype=np.int64)
            return
        if self.replacement:
            for start in range(0, m, self._CHUNK):
                yield rng.integers(0, n, size=min(self._CHUNK, m - start), dtype=np.int64)
            return
        full, rest = divmod(m, n)
        for _ in range(full):
            yield rng.permutation(n).astype(np.int64, copy=False)
        if rest:
            yield rng.permutation(n)[:rest].astype(np.int64, copy=False)

    def _index_array(self) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=np.int64), *self._index_chunks()])

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_ArraySampler):
    """The given indices, in a random order each epoch.

    Example:
        >>> import chainrule
        >>> from chainrule.data import SubsetRandomSampler
        >>> s = SubsetRandomSampler([10, 20, 30], generator=chainrule.Generator().manual_seed(0))
        >>> sorted(s)
        [10, 20, 30]
    """

    def __init__(self, indices: Sequence[int], generator=None):
        self.indices = indices
        self.generator = _check_generator(generator, "SubsetRandomSampler")

    def _index_array(self) -> np.ndarray:
        idx = np.asarray(self.indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError("SubsetRandomSampler: indices must be a 1-D sequence of integers")
        perm = _epoch_rng(self.generator).permutation(len(idx))
        return idx.astype(np.int64, copy=False)[perm]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(_ArraySampler):
    """Indices ``0..len(weights)-1`` drawn with probabilities proportional to ``weights``.

    Args:
        weights: non-negative finite weights (a sequence or a 1-D tensor), not all zero.
        num_samples: indices per epoch.
        replacement: draw with replacement (without, each index appears at most once, so
            ``num_samples`` may not exceed the number of non-zero weights).
        generator: a ``chainrule.Generator``, or None for the default generator.

    Example:
        >>> import chainrule
        >>> from chainrule.data import WeightedRandomSampler
        >>> s = WeightedRandomSampler([0.0, 1.0, 0.0], 4, generator=chainrule.Generator())
        >>> list(s)
        [1, 1, 1, 1]
    """

    def __init__(self, weights, num_samples: int, replacement: bool = True, generator=None):
        who = "WeightedRandomSampler"
        num_samples = _check_count(num_samples, "num_samples", who)
        self.replacement = _check_bool(replacement, "replacement", who)
        w = np.asarray(weights._host() if isinstance(weights, Tensor) else weights,
                       dtype=np.float64)
        if w.ndim != 1:
            raise ValueError(f"{who}: weights should be a 1-D sequence, got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"{who}: weights must be finite and non-negative")
        if w.sum() <= 0:
            raise ValueError(f"{who}: weights sum to zero; at least one must be positive")
        nonzero = int(np.count_nonzero(w))
        if not self.replacement and num_samples > nonzero:
            raise ValueError(f"{who}: cannot draw {num_samples} samples without replacement from "
                             f"{nonzero} non-zero weights")
        self.weights = w
        self.num_samples = num_samples
        self.generator = _check_generator(generator, who)

    def _index_array(self) -> np.ndarray:
        rng = _epoch_rng(self.generator)
        p = self.weights / self.weights.sum()
        out = rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p)
        return out.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Group the indices of another sampler into lists of ``batch_size``.

    Args:
        sampler: a sampler or any iterable of indices.
        batch_size: indices per batch.
        drop_last: drop the last batch when it is shorter than ``batch_size``.

    Example:
        >>> from chainrule.data import BatchSampler, SequentialSampler
        >>> list(BatchSampler(SequentialSampler(range(7)), 3, drop_last=True))
        [[0, 1, 2], [3, 4, 5]]
    """

    def __init__(self, sampler: Iterable, batch_size: int, drop_last: bool):
        self.sampler = sampler
        self.batch_size = _check_count(batch_size, "batch_size", "BatchSampler")
        if not isinstance(drop_last, (bool, np.bool_)):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, got "
                             f"{drop_last!r}")
        self.drop_last = bool(drop_last)

    def _index_batches(self) -> Iterator[np.ndarray]:
        """The batches as int64 arrays, sliced from the epoch's index chunks (built-in
        samplers); a batch that spans two chunks is joined."""
        bs = self.batch_size
        carry = np.zeros(0, dtype=np.int64)
        for chunk in self.sampler._index_chunks():
            idx = np.concatenate([carry, chunk]) if carry.size else chunk
            stop = len(idx) - len(idx) % bs
            for start in range(0, stop, bs):
                yield idx[start:start + bs]
            carry = idx[stop:]
        if carry.size and not self.drop_last:
            yield carry

    def __iter__(self) -> Iterator[list]:
        if isinstance(self.sampler, _ArraySampler):
            for b in self._index_batches():
                yield b.tolist()
            return
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size
