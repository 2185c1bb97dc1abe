"""actstudy/stats.py against values worked out by hand or by the textbook definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actstudy.stats import decay_per_step, holm, overfitting, smallest_possible_p, spread, two_sample_p


def test_spread_gives_mean_std_and_t_interval():
    s = spread([1.0, 2.0, 3.0, math.nan])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert s.ci95 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2 dof) · s / √n
    one = spread([5.0])
    assert (one.mean, one.std, one.n) == (5.0, 0.0, 1) and math.isnan(one.ci95)
    assert spread([]).n == 0


def test_holm_matches_the_step_down_rule():
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    # sorted 0.01, 0.03, 0.04 → 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert holm([0.9, 0.8])[0] == 1.0


def test_welch_finds_a_known_difference_and_not_a_missing_one():
    rng = np.random.default_rng(1)
    same_a, same_b = rng.normal(0.5, 0.05, 8), rng.normal(0.5, 0.05, 8)
    shifted = rng.normal(0.8, 0.05, 8)
    assert two_sample_p(same_a, same_b) > 0.05
    assert two_sample_p(same_a, shifted) < 1e-6
    assert two_sample_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert two_sample_p([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert math.isnan(two_sample_p([1.0], [2.0, 3.0]))


def test_mann_whitney_is_exact_and_has_a_floor_at_small_n():
    # complete separation of 3 vs 3: the exact two-sided p is 2/C(6,3) = 0.1, never below 0.05
    assert two_sample_p([1, 2, 3], [4, 5, 6], test="mannwhitney") == pytest.approx(0.1)
    assert smallest_possible_p(3, 3, "mannwhitney") == pytest.approx(0.1)
    assert smallest_possible_p(3, 3, "welch") == 0.0
    with pytest.raises(ValueError, match="choose one of"):
        two_sample_p([1, 2], [3, 4], test="ttest")


def test_decay_slope_of_an_exact_exponential():
    t = np.arange(1, 11)
    assert decay_per_step(t, 10.0 ** (0.3 * t - 5)) == pytest.approx(0.3)
    assert decay_per_step(t, np.r_[0.0, 10.0 ** (0.3 * t[1:])]) == pytest.approx(0.3)  # underflow left out


def test_overfitting_onset_and_gaps():
    epochs = [1, 2, 3, 4, 5]
    train = [1.0, 0.8, 0.6, 0.4, 0.2]
    val = [1.1, 0.9, 0.85, 0.95, 1.2]
    gap = np.subtract(val, train)
    o = overfitting(epochs, train, val, gap)
    assert o["onset_epoch"] == 3
    assert o["gap_at_best"] == pytest.approx(0.25) and o["gap_at_end"] == pytest.approx(1.0)
    # validation still falling at the end: no onset
    assert math.isnan(overfitting(epochs, train, [1.1, 1.0, 0.9, 0.8, 0.7], gap)["onset_epoch"])
