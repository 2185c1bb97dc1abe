"""actstudy/stats.py against values worked out by hand or by the textbook definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actstudy.stats import (
    TESTS,
    above_baseline_p,
    benjamini_hochberg,
    decay_per_step,
    fisher_p,
    hedges_g,
    holm,
    km_median,
    logrank_p,
    mean_difference,
    min_detectable_difference,
    overfitting,
    paired_p,
    smallest_possible_p,
    spread,
    two_sample_p,
    wilson_interval,
)


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
    # two constant groups: not "certainly different", but as separated as 2 vs 2 can be: 2 / C(4, 2)
    assert two_sample_p([1.0, 1.0], [2.0, 2.0]) == pytest.approx(1 / 3)
    assert two_sample_p([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], test="mannwhitney") == pytest.approx(0.1)
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


def test_overfitting_onset_rises_above_noise_for_three_evaluations():
    epochs = list(range(1, 11))
    train = [1.0 - 0.05 * e for e in epochs]
    val = [1.0, 0.9, 0.8, 0.81, 0.80, 0.81, 0.80, 0.95, 1.0, 1.05]
    # successive differences −.1 −.1 .01 −.01 .01 −.01 .15 .05 .05: median .01, MAD .04, noise
    # 1.4826·.04/√2 = .0419, margin .0839; minimum .8 at epoch 3 (epoch 5 only equals it); epochs 8-10
    # are above .8839: onset at epoch 3
    o = overfitting(epochs, train, val, np.subtract(val, train))
    assert o["onset_epoch"] == 3
    assert o["gap_at_best"] == pytest.approx(0.8 - 0.85) and o["gap_at_end"] == pytest.approx(1.05 - 0.5)
    # wobbles of a run at its floor: the old 1% rule saw overfitting (0.815 > 1.01·0.8); noise
    # .0236 (MAD .0225), margin .047: nothing rises above .847
    flat = [1.0, 0.9, 0.8, 0.82, 0.81, 0.82, 0.815]
    assert math.isnan(overfitting(epochs[:7], train[:7], flat, np.zeros(7))["onset_epoch"])
    # a rise for only two evaluations is not an onset
    assert math.isnan(overfitting(epochs[:9], train[:9], val[:9], np.zeros(9))["onset_epoch"])
    # validation still falling at the end: no onset
    assert math.isnan(overfitting(epochs[:5], train[:5], [1.1, 1.0, 0.9, 0.8, 0.7], np.zeros(5))["onset_epoch"])


def test_mann_whitney_with_ties_falls_back_to_the_normal_approximation():
    # 1,1,2 vs 2,3,3 has ties, so the exact table does not apply; by hand: U = 0.5, mean 4.5,
    # tie-corrected variance (3·3/12)·(7 − (2³−2)·3/(6·5)) = 0.75·6.4 = 4.8, continuity-corrected
    # z = (4.5 − 0.5 − 0.5)/√4.8 = 1.5975, two-sided p = 0.1101
    assert two_sample_p([1, 1, 2], [2, 3, 3], test="mannwhitney") == pytest.approx(0.11015, abs=1e-4)
    assert "normal approximation" in TESTS["mannwhitney"] and "ties" in TESTS["mannwhitney"]


def test_paired_and_unpaired_p_of_the_same_numbers():
    a, b = [1.0, 2.0, 3.0], [1.5, 2.4, 3.7]
    # differences −0.5, −0.4, −0.7: mean −0.5333, sd 0.15275, se 0.088192, t = −6.0474 on 2 dof, and with
    # 2 dof the two-sided p is 1 − |t|/√(t² + 2) = 0.02628
    t = 0.5333333 / 0.0881917
    assert paired_p(a, b) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-4)
    # unpaired, the seed-to-seed spread swamps the difference: Welch t = −0.6196 on 3.96 dof
    assert two_sample_p(a, b) == pytest.approx(0.5692, abs=2e-3)
    # Wilcoxon signed-rank: all three differences negative, exact p = 2 / 2³
    assert paired_p(a, b, test="mannwhitney") == pytest.approx(0.25)
    assert paired_p([1, 2, 3], [1, 2, 3]) == 1.0 and paired_p([2, 3, 4], [1, 2, 3]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="differ in length"):
        paired_p([1, 2], [1, 2, 3])


def test_difference_with_its_interval():
    paired = mean_difference([1.0, 2.0, 3.0], [1.5, 2.4, 3.7], paired=True)
    assert paired.diff == pytest.approx(-0.533333, rel=1e-5)
    assert paired.high - paired.diff == pytest.approx(4.302653 * 0.0881917, rel=1e-5)  # t(0.975, 2)·se
    unpaired = mean_difference([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    # se = √(1/3 + 1/3) = 0.8165 on 4 dof (equal variances): half-width 2.776445·0.8165 = 2.2670
    assert (unpaired.diff, unpaired.dof) == (-1.0, pytest.approx(4.0))
    assert unpaired.low == pytest.approx(-1 - 2.776445 * math.sqrt(2 / 3), rel=1e-6)


def test_hedges_g_by_hand():
    # means differ by 1, pooled sd 1, dof 4: d = −1, J = 1 − 3/15 = 0.8
    assert hedges_g([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(-0.8)
    assert math.isnan(hedges_g([1.0, 1.0], [1.0, 1.0])) and math.isnan(hedges_g([1.0], [1.0, 2.0]))


def test_minimum_detectable_difference():
    # large samples: the normal shortcut (z_0.975 + z_0.8)·se = 2.8016·se is exact enough
    assert min_detectable_difference(0.01, 1e6) == pytest.approx(0.028016, rel=1e-3)
    # n = 3 per group, sd 1 (se √(2/3), 4 dof): far more than the shortcut's 2.8·0.816 = 2.29
    small = min_detectable_difference(math.sqrt(2 / 3), 4.0)
    assert 3.0 < small < 3.5
    # and it is the difference a t-test does detect 80% of the time (simulated: 4000 paired samples, n = 5)
    rng = np.random.default_rng(0)
    mdd = min_detectable_difference(1 / math.sqrt(5), 4.0)
    from scipy import stats as sps
    hits = np.mean([sps.ttest_1samp(rng.normal(mdd, 1.0, 5), 0.0).pvalue < 0.05 for _ in range(4000)])
    assert hits == pytest.approx(0.80, abs=0.02)


def test_wilson_interval_by_hand():
    # 3 of 5: centre (0.6 + z²/10)/(1 + z²/5) = 0.55655, half z·√(0.048 + z²/100)/(1 + z²/5) = 0.32583
    low, high = wilson_interval(3, 5)
    assert (low, high) == (pytest.approx(0.23072, abs=1e-5), pytest.approx(0.88238, abs=1e-5))
    assert wilson_interval(0, 4)[0] == 0.0 and wilson_interval(4, 4)[1] == 1.0 and 0 < wilson_interval(0, 4)[1] < 1


def test_fisher_exact_by_hand():
    # 3/3 against 0/3: the only table as extreme either way, 2 of C(6,3) = 20
    assert fisher_p(3, 3, 0, 3) == pytest.approx(0.1)
    assert fisher_p(2, 4, 2, 4) == 1.0 and math.isnan(fisher_p(0, 0, 1, 2))


def test_kaplan_meier_median_treats_an_unsolved_run_as_censored():
    # solved at 100, 300, 400; one run unsolved when it stopped at 200. S(100) = 3/4; the censored run
    # leaves the risk set; S(300) = 3/4 · 1/2 = 0.375 <= 0.5: the median is 300
    assert km_median([100, 200, 300, 400], [True, False, True, True]) == 300
    # counting it as solved at 200 instead would give S(200) = 0.5 and a median of 200
    assert km_median([100, 200, 300, 400], [True, True, True, True]) == 200
    # fewer than half ever solved: the median lies beyond the budget
    assert math.isnan(km_median([100, 500, 500], [True, False, False]))


def test_log_rank_by_hand():
    # A solved at 1 and 2, B at 3 and 4. At t=1: 4 at risk, E_A = 1/2, V = 1/4; at t=2: 3 at risk,
    # E_A = 1/3, V = 2/9; afterwards A has no one at risk. O − E = 7/6, V = 17/36, χ² = 2.882, p = 0.0896
    assert logrank_p([1, 2], [True, True], [3, 4], [True, True]) == pytest.approx(0.08956, abs=1e-4)
    assert math.isnan(logrank_p([5, 5], [False, False], [5], [False]))


def test_benjamini_hochberg_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.5 (m = 4): 4·p/k = 0.04, 0.0667, 0.0533, 0.5; minimum from the top down
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5, math.nan])
    assert q[:4] == pytest.approx([0.04, 0.053333, 0.053333, 0.5], rel=1e-4)
    assert math.isnan(q[4])


def test_above_the_baseline_by_hand():
    # 0.10, 0.12, 0.14 against 0.078: mean 0.12, sd 0.02, t = 0.042/(0.02/√3) = 3.637 on 2 dof;
    # one-sided p = (1 − t/√(t² + 2))/2 = 0.0340
    t = 0.042 / (0.02 / math.sqrt(3))
    assert above_baseline_p([0.10, 0.12, 0.14], 0.078) == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2, rel=1e-4)
    assert above_baseline_p([0.07, 0.08, 0.075], 0.078) > 0.5
    assert above_baseline_p([1.0, 1.0, 1.0], 0.078) == 0.0 and above_baseline_p([0.05, 0.05], 0.078) == 1.0
    assert math.isnan(above_baseline_p([0.9], 0.078))
