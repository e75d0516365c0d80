"""The statistics of chainrule.diagnostics.stats against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chainrule.diagnostics import stats


def test_moments_by_hand():
    # values 1, 2, 3, 6: mean 3, squared deviations 4 + 1 + 0 + 9 = 14
    n, mean, m2, nan, inf = stats.moments(np.array([[1.0, 2.0], [3.0, 6.0]], np.float32))
    assert (n, mean, m2, nan, inf) == (4, 3.0, 14.0, 0, 0)


def test_moments_leave_out_nonfinite_and_count_them():
    a = np.array([np.nan, 1.0, np.inf, 3.0, -np.inf, np.nan], np.float32)
    n, mean, m2, nan, inf = stats.moments(a)
    assert (n, mean, m2, nan, inf) == (2, 2.0, 2.0, 2, 2)
    assert stats.moments(np.array([np.nan], np.float32)) == (0, 0.0, 0.0, 1, 0)
    assert stats.moments(np.zeros((0, 3), np.float32)) == (0, 0.0, 0.0, 0, 0)


def test_moments_of_integer_and_half_arrays():
    assert stats.moments(np.array([1, 3], np.int64))[:3] == (2, 2.0, 2.0)
    n, mean, m2, _, _ = stats.moments(np.full(4, 300.0, np.float16))  # 300^2 overflows fp16
    assert (n, mean, m2) == (4, 300.0, 0.0)


def test_moments_std_is_accurate_when_mean_dominates():
    rng = np.random.default_rng(0)
    a = (0.5 + 1e-3 * rng.standard_normal(10_000)).astype(np.float32)
    n, mean, m2, _, _ = stats.moments(a)
    ref = a.astype(np.float64)
    assert math.isclose(mean, ref.mean(), rel_tol=1e-12)
    assert math.isclose(math.sqrt(m2 / n), ref.std(), rel_tol=1e-4)


def test_merge_moments_equals_moments_of_the_union():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(37) * 3 + 1
    b = rng.standard_normal(11) - 4
    merged = stats.merge_moments(*stats.moments(a)[:3], *stats.moments(b)[:3])
    whole = stats.moments(np.concatenate([a, b]))[:3]
    assert merged[0] == whole[0]
    assert merged[1] == pytest.approx(whole[1], rel=1e-12)
    assert merged[2] == pytest.approx(whole[2], rel=1e-12)
    assert stats.merge_moments(0, 0.0, 0.0, 3, 2.0, 5.0) == (3, 2.0, 5.0)
    assert stats.merge_moments(3, 2.0, 5.0, 0, 0.0, 0.0) == (3, 2.0, 5.0)
    assert stats.merge_moments(0, 0.0, 0.0, 0, 0.0, 0.0) == (0, 0.0, 0.0)


def test_sq_norm_by_hand_and_without_overflow():
    assert stats.sq_norm(np.array([[3.0, 4.0], [0.0, 12.0]], np.float32)) == 169.0
    big = np.full(3, 3e20, np.float32)  # each square (9e40) overflows float32
    assert stats.sq_norm(big) == pytest.approx(3 * float(np.float32(3e20)) ** 2, rel=1e-12)
    assert math.isnan(stats.sq_norm(np.array([1.0, np.nan], np.float32)))
    assert math.isinf(stats.sq_norm(np.array([1.0, -np.inf], np.float32)))
    assert stats.sq_norm(np.zeros(0, np.float32)) == 0.0


def test_nonfinite_counts():
    a = np.array([[np.nan, np.inf], [-np.inf, 0.0], [np.nan, np.nan]])
    assert stats.nonfinite_counts(a) == (3, 2)
    assert stats.nonfinite_counts(np.arange(4)) == (0, 0)


def test_alive_units_2d_4d_1d():
    # unit 0 is zero for both examples: dead; units 1 and 2 are alive
    a = np.array([[0.0, 0.0, 5.0], [0.0, 2.0, 0.0]], np.float32)
    assert stats.alive_units(a).tolist() == [False, True, True]
    img = np.zeros((2, 3, 4, 4), np.float32)
    img[1, 2, 3, 0] = 1.0  # channel 2 alive at one pixel of one example
    assert stats.alive_units(img).tolist() == [False, False, True]
    assert stats.alive_units(np.array([0.0, 1.0])).tolist() == [False, True]
    assert stats.alive_units(np.float32(0.0) + np.zeros(())) is None


def test_saturated_count_thresholds():
    # tanh: |t| > 0.99 strictly
    t = np.array([0.99, 0.9901, -0.995, 0.5, -0.99, 1.0], np.float64)
    assert stats.saturated_count(t, "tanh") == 3
    # sigmoid: below 0.01 or above 0.99 strictly
    s = np.array([0.0099, 0.01, 0.5, 0.99, 0.9901, 0.0], np.float64)
    assert stats.saturated_count(s, "sigmoid") == 3
    assert stats.TANH_SATURATION == 0.99 and stats.SIGMOID_SATURATION == 0.01
    with pytest.raises(ValueError, match="kind must be 'sigmoid' or 'tanh'"):
        stats.saturated_count(s, "relu")
