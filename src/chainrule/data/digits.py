"""The bundled handwritten digits: 1,797 images of 8x8 pixels with values 0..16, 10 classes.

This is the test set of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin
and C. Kaynak, 1998), exactly as scikit-learn ships it (``sklearn.datasets.load_digits``). It
is stored in the package as ``digits.npz`` (``images``: uint8 (1797, 8, 8); ``targets``: uint8
(1797,)); the attribution and licence are in ``DIGITS_LICENSE.md`` beside it. Nothing is
downloaded.

Example:
    >>> from chainrule.data import digits_split, load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((1797, 64), chainrule.float32, (1797,), chainrule.int64)
    >>> train, test = digits_split()
    >>> len(train), len(test)
    (1438, 359)
"""

from __future__ import annotations

import functools
import numbers
from importlib import resources

import numpy as np

from ..tensor import Tensor, _wrap
from .dataset import TensorDataset

__all__ = ["digits_split", "load_digits"]

N_SAMPLES = 1797
N_CLASSES = 10


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """The bundled arrays (read once; callers must not modify them)."""
    ref = resources.files(__package__).joinpath("digits.npz")
    try:
        with ref.open("rb") as f, np.load(f, allow_pickle=False) as z:
            images, targets = z["images"], z["targets"]
    except (OSError, KeyError, ValueError) as e:
        raise RuntimeError(f"the bundled digits data ({ref}) is missing or damaged "
                           f"({type(e).__name__}: {e}); reinstall chainrule") from e
    if (images.shape != (N_SAMPLES, 8, 8) or targets.shape != (N_SAMPLES,)
            or images.dtype != np.uint8 or targets.dtype != np.uint8):
        raise RuntimeError(f"the bundled digits data ({ref}) has unexpected shapes or dtypes: "
                           f"images {images.dtype}{images.shape}, targets "
                           f"{targets.dtype}{targets.shape}; reinstall chainrule")
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


def load_digits(normalize: bool = True) -> tuple[Tensor, Tensor]:
    """The whole digits set as tensors.

    Args:
        normalize: scale the pixels to [0, 1] (divide by 16); otherwise they keep their
            integer values 0..16 (still float32).

    Returns:
        ``(X, y)``: X float32 of shape (1797, 64) (each row an 8x8 image, row-major), y int64
        class labels 0..9 of shape (1797,). Fresh tensors on each call.

    Example:
        >>> from chainrule.data import load_digits
        >>> X, y = load_digits()
        >>> float(X.max()), int(y.max())
        (1.0, 9)
    """
    images, targets = _raw()
    x = images.reshape(N_SAMPLES, 64).astype(np.float32)
    if normalize:
        x *= np.float32(1.0 / 16.0)  # exact: 1/16 is a power of two
    return _wrap(x), _wrap(targets.astype(np.int64))


def _stratified_test_counts(class_sizes: np.ndarray, test_fraction: float) -> np.ndarray:
    """Per-class test counts summing to round(n * test_fraction) (largest remainders)."""
    total = round(float(class_sizes.sum()) * test_fraction)
    exact = class_sizes * test_fraction
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        order = np.argsort(-(exact - counts), kind="stable")  # ties: lower class first
        counts[order[:short]] += 1
    return counts


def digits_split(test_fraction: float = 0.2, seed: int = 0,
                 normalize: bool = True) -> tuple[TensorDataset, TensorDataset]:
    """A fixed, stratified train/test split of the digits as two TensorDatasets ``(X, y)``.

    Every class is split in the same proportion: the test set takes ``round(1797 *
    test_fraction)`` samples, shared out over the classes by largest remainder, and which
    samples of a class go to the test set is drawn by a NumPy PCG64 generator seeded with
    ``seed`` (independent of chainrule's global seed). Both sets keep the original order of
    the samples. The default split (0.2, seed 0) has 1,438 training and 359 test samples.

    Args:
        test_fraction: share of the samples held out, strictly between 0 and 1.
        seed: the seed that picks the held-out samples.
        normalize: as in :func:`load_digits`.

    Example:
        >>> from chainrule.data import digits_split
        >>> train, test = digits_split(test_fraction=0.25, seed=1)
        >>> len(train) + len(test), train.tensors[0].shape[1]
        (1797, 64)
    """
    if (not isinstance(test_fraction, numbers.Real) or isinstance(test_fraction, bool)
            or not 0 < test_fraction < 1):
        raise ValueError(f"digits_split: test_fraction must be a number strictly between 0 "
                         f"and 1, got {test_fraction!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"digits_split: seed must be a non-negative integer, got {seed!r}")
    x, y = load_digits(normalize)
    labels = y._data
    class_sizes = np.bincount(labels, minlength=N_CLASSES)
    counts = _stratified_test_counts(class_sizes, float(test_fraction))
    if counts.sum() == 0 or counts.sum() == N_SAMPLES:
        raise ValueError(f"digits_split: test_fraction={test_fraction} leaves an empty "
                         f"{'test' if counts.sum() == 0 else 'training'} set")
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    is_test = np.zeros(N_SAMPLES, dtype=bool)
    for c in range(N_CLASSES):
        members = np.flatnonzero(labels == c)
        is_test[rng.permutation(members)[:counts[c]]] = True
    tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    xd, yd = x._data, labels
    return (TensorDataset(_wrap(xd[tr]), _wrap(yd[tr])),
            TensorDataset(_wrap(xd[te]), _wrap(yd[te])))
