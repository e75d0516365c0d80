"""The statistics the gradient monitor records, on raw arrays (NumPy or CuPy).

Each function reads one array and returns plain Python numbers (or a small boolean array for
the alive-unit mask), so the monitor never builds autograd graph nodes and never keeps a
reference to the tensors of a training step.

Definitions (the thresholds are explained in ``docs/diagnostics.md``):

- **mean / std** of an activation: over every element of the layer's output (batch included),
  population standard deviation, over the finite values only when some are NaN/Inf.
- **dead unit** of a ReLU layer: a unit (index along dim 1, the feature or channel dim; every
  element for a 1-D output) whose output is exactly 0 for every example in the batch and every
  other position.
- **saturated unit**: a sigmoid output within ``SIGMOID_SATURATION`` (0.01) of 0 or 1, or a
  tanh output with absolute value above ``TANH_SATURATION`` (0.99); the fraction is over all
  (example, unit) entries.
- **norm**: the Euclidean norm of the flattened array, computed without overflow for float32
  values beyond 1e19 (their squares overflow float32).

Example:
    >>> import numpy as np
    >>> from chainrule.diagnostics.stats import moments, sq_norm
    >>> moments(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    (4, 2.5, 5.0, 0, 0)
    >>> sq_norm(np.array([3.0, 4.0], dtype=np.float32))
    25.0
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module

__all__ = [
    "SIGMOID_SATURATION", "TANH_SATURATION", "alive_units", "merge_moments", "moments",
    "nonfinite_counts", "saturated_count", "sq_norm",
]

TANH_SATURATION = 0.99
"""A tanh output is saturated when its absolute value exceeds this (tanh' = 1 - t^2 < 0.0199,
at most 1/50 of its value at 0)."""

SIGMOID_SATURATION = 0.01
"""A sigmoid output is saturated when it is within this of 0 or 1 (sigmoid' = s(1 - s) <
0.0099, at most 1/25 of its value at 0)."""


def _flat_float(a):
    """``a`` flattened, as a floating array (float16 widened to float32 so squares of ordinary
    values do not overflow)."""
    v = a.reshape(-1)
    if v.dtype.kind not in "fV":
        v = v.astype(np.float64)
    elif v.dtype.itemsize < 4:
        v = v.astype(np.float32)
    return v


def nonfinite_counts(a) -> tuple[int, int]:
    """``(number of NaN, number of +-Inf)`` in ``a``.

    Example:
        >>> import numpy as np
        >>> from chainrule.diagnostics.stats import nonfinite_counts
        >>> nonfinite_counts(np.array([1.0, np.nan, np.inf, -np.inf]))
        (1, 2)
    """
    if a.dtype.kind not in "fc":
        return 0, 0
    xp = get_array_module(a)
    return int(xp.count_nonzero(xp.isnan(a))), int(xp.count_nonzero(xp.isinf(a)))


def sq_norm(a) -> float:
    """The squared Euclidean norm of ``a`` (all elements), as a Python float; NaN when ``a``
    holds NaN, Inf when it holds an Inf. Finite float32 values whose squares overflow are
    summed again in float64, so the result is exact to float64 rounding.

    Example:
        >>> import numpy as np
        >>> from chainrule.diagnostics.stats import sq_norm
        >>> sq_norm(np.full(4, 2.0 ** 100, dtype=np.float32)) == 4 * 2.0 ** 200  # > float32 max
        True
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _sq_norm(a)


def _sq_norm(a) -> float:
    """:func:`sq_norm` for callers that have already silenced NumPy's overflow warnings."""
    xp = get_array_module(a)
    v = _flat_float(a)
    s = float(xp.dot(v, v))
    if math.isinf(s) and v.dtype != np.float64 and bool(xp.isfinite(v).all()):
        v = v.astype(np.float64)
        s = float(xp.dot(v, v))
    return s


def moments(a) -> tuple[int, float, float, int, int]:
    """``(n, mean, m2, nan, inf)`` of the elements of ``a``: ``n`` values used (the finite
    ones), their mean, ``m2`` = the sum of squared deviations from the mean (so the population
    variance is ``m2 / n``), and the counts of NaN and Inf values left out.

    Example:
        >>> import numpy as np
        >>> from chainrule.diagnostics.stats import moments
        >>> n, mean, m2, nan, inf = moments(np.array([0.0, 2.0, np.nan], dtype=np.float32))
        >>> n, mean, m2 / n, nan, inf
        (2, 1.0, 1.0, 1, 0)
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _moments(a)


def _moments(a) -> tuple[int, float, float, int, int]:
    """:func:`moments` for callers that have already silenced NumPy's overflow warnings."""
    xp = get_array_module(a)
    v = _flat_float(a)
    n = int(v.size)
    if n == 0:
        return 0, 0.0, 0.0, 0, 0
    s = float(xp.sum(v, dtype=np.float64))
    nan = inf = 0
    if not math.isfinite(s):
        finite = xp.isfinite(v)
        nan, inf = nonfinite_counts(v)
        v = v[finite]
        n = int(v.size)
        if n == 0:
            return 0, 0.0, 0.0, nan, inf
        s = float(xp.sum(v, dtype=np.float64))
    mean = s / n
    c = v - v.dtype.type(mean)
    m2 = _sq_norm(c)
    return n, mean, m2, nan, inf


def merge_moments(n1: int, mean1: float, m21: float, n2: int, mean2: float,
                  m22: float) -> tuple[int, float, float]:
    """Combine the ``(n, mean, m2)`` of two sets of values into those of their union (Chan,
    Golub and LeVeque's pairwise update), for a layer called several times in one step.

    Example:
        >>> from chainrule.diagnostics.stats import merge_moments
        >>> merge_moments(2, 1.0, 2.0, 2, 3.0, 2.0)  # {0, 2} and {2, 4}
        (4, 2.0, 8.0)
    """
    n = n1 + n2
    if n == 0:
        return 0, 0.0, 0.0
    if n1 == 0:
        return n2, mean2, m22
    if n2 == 0:
        return n1, mean1, m21
    d = mean2 - mean1
    mean = mean1 + d * n2 / n
    return n, mean, m21 + m22 + d * d * n1 * n2 / n


def alive_units(a):
    """Boolean mask over the units of a ReLU output: True where the unit is non-zero for at
    least one example (and position). Units are indexed along dim 1 for outputs of 2 or more
    dims (features, or channels of an image), and are the elements of a 1-D output. Returns
    None for a 0-d output.

    Example:
        >>> import numpy as np
        >>> from chainrule.diagnostics.stats import alive_units
        >>> alive_units(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
        array([False,  True,  True])
    """
    if a.ndim == 0:
        return None
    xp = get_array_module(a)
    nz = a != 0
    if a.ndim == 1:
        return nz
    axes = (0, *range(2, a.ndim))
    return xp.any(nz, axis=axes)


def saturated_count(a, kind: str) -> int:
    """How many entries of ``a`` are saturated, for ``kind`` "sigmoid" (within 0.01 of 0 or
    1) or "tanh" (absolute value above 0.99).

    Example:
        >>> import numpy as np
        >>> from chainrule.diagnostics.stats import saturated_count
        >>> saturated_count(np.array([0.995, -0.999, 0.5, 0.99]), "tanh")
        2
        >>> saturated_count(np.array([0.005, 0.5, 0.9999]), "sigmoid")
        2
    """
    xp = get_array_module(a)
    if kind == "tanh":
        return int(xp.count_nonzero(xp.abs(a) > TANH_SATURATION))
    if kind == "sigmoid":
        lo = SIGMOID_SATURATION
        return int(xp.count_nonzero((a < lo) | (a > 1.0 - lo)))
    raise ValueError(f"saturated_count: kind must be 'sigmoid' or 'tanh', got {kind!r}")
