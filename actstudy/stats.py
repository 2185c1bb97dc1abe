"""Statistics over seeds: spread, confidence intervals, and tests of each activation against the reference.

Numbers only (numpy, scipy); no run directories, no plots. The report feeds it one value per completed seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
TESTS = {
    "welch": "Welch's t-test (two-sided, unequal variances)",
    # scipy's choice: exact when a sample has at most 8 values and no value is tied, else the normal
    # approximation with the tie correction (seeds that end at one accuracy tie)
    "mannwhitney": "Mann–Whitney U test (two-sided; exact for small samples without ties, normal approximation "
                   "with a tie correction otherwise)",
}
PAIRED_TESTS = {
    "welch": "paired t-test (two-sided) on the per-seed differences",
    "mannwhitney": "Wilcoxon signed-rank test (two-sided) on the per-seed differences",
}
POWER = 0.8  # the power at which the minimum detectable difference is given


@dataclass
class Spread:
    """Mean, sample std (ddof=1), the half-width of the 95% t confidence interval, and n."""

    mean: float
    std: float
    ci95: float  # mean ± ci95 covers the true mean with 95% confidence (t distribution, n−1 dof)
    n: int


def spread(values) -> Spread:
    """NaNs are dropped; ±inf counts (a gradient that underflowed to 0 gives a ratio of −inf)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = int(values.size)
    if n == 0:
        return Spread(math.nan, math.nan, math.nan, 0)
    if not np.all(np.isfinite(values)):
        return Spread(float(values.mean()), math.nan, math.nan, n)  # no spread around an infinite mean
    mean = float(values.mean())
    if n == 1:
        return Spread(mean, 0.0, math.nan, 1)  # one seed: no interval can be given
    std = float(values.std(ddof=1))
    half = float(sps.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return Spread(mean, std, half, n)


def mean_of(values) -> float:
    """The mean of the values that are not NaN (NaN when none are)."""
    array = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    return float(array.mean()) if array.size else math.nan


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed, NaN for none), NaNs left out."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(values.std(ddof=1))


def two_sample_p(a, b, test: str = "welch") -> float:
    """Two-sided p-value for 'a and b come from the same distribution' (NaN when it cannot be computed)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of: {', '.join(TESTS)}")
    if a.size < 2 or b.size < 2:
        return math.nan
    if a.std() == 0 and b.std() == 0:
        # No spread at all: t is undefined. Identical constants show no difference; different ones are as far
        # apart as two samples can be, which at n values per group is p = 2 / C(n_a + n_b, n_a) by permutation
        # (the exact rank test's smallest p), not certainty.
        return 1.0 if a[0] == b[0] else 2.0 / math.comb(a.size + b.size, a.size)
    if test == "welch":
        return float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def paired_p(a, b, test: str = "welch") -> float:
    """Two-sided p for 'a − b is centred on 0' with a[i], b[i] from the same seed (NaN pairs dropped).

    test="welch" gives the paired t-test, test="mannwhitney" its rank counterpart, Wilcoxon's signed-rank test.
    Differences that are all equal have no spread: all zero gives 1; all one non-zero value gives the
    sign-flip permutation p, 2 / 2^n.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of: {', '.join(TESTS)}")
    d = _differences(a, b)
    if d.size < 2:
        return math.nan
    if d.std() == 0:
        return 1.0 if d[0] == 0 else min(1.0, 2.0 / 2 ** d.size)
    if test == "welch":
        return float(sps.ttest_rel(d, np.zeros_like(d)).pvalue)
    return float(sps.wilcoxon(d).pvalue)


def _differences(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    d = a - b
    return d[np.isfinite(d)]


@dataclass
class Difference:
    """mean(a) − mean(b) with its two-sided 95% confidence interval, and the t distribution's dof behind it."""

    diff: float
    low: float
    high: float
    se: float
    dof: float


def mean_difference(a, b, paired: bool = False) -> Difference:
    """The difference of means with a 95% t interval: on the per-seed differences when paired, else Welch's
    (unequal variances, Welch–Satterthwaite degrees of freedom). NaN when a side has fewer than 2 values."""
    if paired:
        d = _differences(a, b)
        if d.size < 2:
            return Difference(math.nan, math.nan, math.nan, math.nan, math.nan)
        diff, se, dof = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), float(d.size - 1)
    else:
        a, b = _finite(a), _finite(b)
        if a.size < 2 or b.size < 2:
            return Difference(math.nan, math.nan, math.nan, math.nan, math.nan)
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        diff, se = float(a.mean() - b.mean()), float(math.sqrt(va + vb))
        dof = float((va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))) if va + vb > 0 else math.inf
    half = float(sps.t.ppf(1 - ALPHA / 2, dof) * se)
    return Difference(diff, diff - half, diff + half, se, dof)


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def hedges_g(a, b) -> float:
    """Standardised difference (mean(a) − mean(b)) / pooled sd, times Hedges' small-sample correction
    J = 1 − 3 / (4·dof − 1) with dof = n_a + n_b − 2. The same standardiser whether or not the seeds pair up,
    so g is comparable across reports. NaN without spread or with fewer than 2 values a side."""
    a, b = _finite(a), _finite(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    dof = a.size + b.size - 2
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / dof)
    if pooled == 0:
        return math.nan
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * dof - 1)))


def min_detectable_difference(se: float, dof: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The true difference a two-sided t-test with this standard error and these dof detects with the
    given power: the non-centrality δ where P(|T| > t_crit) = power for T ~ noncentral t(dof, δ), times se.

    Exact, not the large-sample z_(1−α/2) + z_power: at 2 dof that shortcut is off by half.
    """
    if not (se > 0 and dof > 0 and math.isfinite(se)):
        return math.nan
    crit = sps.t.ppf(1 - alpha / 2, dof)

    def shortfall(delta: float) -> float:
        # the far tail is negligible where scipy's noncentral t gives NaN for it (large δ)
        far = float(np.nan_to_num(sps.nct.cdf(-crit, dof, delta)))
        return sps.nct.sf(crit, dof, delta) + far - power

    from scipy.optimize import brentq

    high = 2 * (crit + sps.norm.ppf(power)) + 10
    return float(brentq(shortfall, 0.0, high, xtol=1e-10) * se)


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sensible at 0/n and n/n, unlike the normal one)."""
    if n <= 0:
        return math.nan, math.nan
    z = float(sps.norm.ppf(1 - ALPHA / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_p(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """Fisher's exact test (two-sided) that two proportions are equal; NaN when a side has no runs."""
    if n_a <= 0 or n_b <= 0:
        return math.nan
    table = [[successes_a, n_a - successes_a], [successes_b, n_b - successes_b]]
    return float(sps.fisher_exact(table).pvalue)


def kaplan_meier(times, events) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate of P(not yet solved after t updates): (event times, survival just after each).

    `events[i]` is True when run i was solved at times[i], False when it was censored there (unsolved at
    its budget, or ended before it). A censored run counts as at risk up to and including its time.
    """
    times = np.asarray(times, dtype=float)
    events = np.asarray(events, dtype=bool)
    at_times = np.unique(times[events])
    survival, s = [], 1.0
    for t in at_times:
        at_risk = int(np.sum(times >= t))
        solved = int(np.sum((times == t) & events))
        s *= 1 - solved / at_risk
        survival.append(s)
    return at_times, np.asarray(survival, dtype=float)


def km_median(times, events) -> float:
    """The smallest time at which the Kaplan–Meier survival reaches 0.5 or below; NaN when it never does
    (fewer than half the runs solved, counting censoring: the median is beyond the budget)."""
    at_times, survival = kaplan_meier(times, events)
    reached = np.flatnonzero(survival <= 0.5 + 1e-12)
    return float(at_times[reached[0]]) if reached.size else math.nan


def logrank_p(times_a, events_a, times_b, events_b) -> float:
    """Two-sided log-rank test that two groups solve at the same rate over time (scipy.stats.logrank);
    NaN when no run of either group was solved (nothing to compare) or a group is empty."""
    def censored(times, events):
        times = np.asarray(times, dtype=float)
        events = np.asarray(events, dtype=bool)
        return sps.CensoredData(uncensored=times[events], right=times[~events])

    if len(times_a) == 0 or len(times_b) == 0 or not (np.any(events_a) or np.any(events_b)):
        return math.nan
    return float(sps.logrank(censored(times_a, events_a), censored(times_b, events_b)).pvalue)


def _ranked(p_values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p as floats, an all-NaN array to fill, the indices of the non-NaN p from smallest to largest)."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    return p, np.full(p.shape, math.nan), valid[np.argsort(p[valid], kind="stable")]


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: controls the family-wise error rate over the family given.

    Adjusted p for the k-th smallest of m: max over j ≤ k of (m − j + 1)·p_(j), capped at 1. NaNs stay NaN
    and do not count towards m.
    """
    p, adjusted, order = _ranked(p_values)
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def above_baseline_p(values, baseline: float) -> float:
    """One-sided p for 'the mean is above the baseline' (a known constant, not a sample): a one-sample t-test.
    Values without spread have an infinite t: 0 when they lie above the baseline, 1 otherwise. NaN under
    2 values (nothing can be shown)."""
    v = _finite(values)
    if v.size < 2 or not math.isfinite(baseline):
        return math.nan
    if v.std() == 0:
        return 0.0 if v[0] > baseline else 1.0
    return float(sps.ttest_1samp(v, baseline, alternative="greater").pvalue)


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini–Hochberg adjusted p (q-values): controls the false discovery rate over the family given.

    For the k-th smallest of m: min over j ≥ k of m·p_(j)/j, capped at 1. NaNs stay NaN and do not count.
    """
    p, adjusted, order = _ranked(p_values)
    m = order.size
    running = 1.0
    for rank in range(m - 1, -1, -1):
        running = min(running, m * p[order[rank]] / (rank + 1))
        adjusted[order[rank]] = running
    return adjusted


def smallest_possible_p(n_a: int, n_b: int, test: str) -> float:
    """The smallest two-sided p a rank test can give at these sample sizes (Welch's has no such floor)."""
    if test != "mannwhitney" or n_a < 1 or n_b < 1:
        return 0.0
    return 2.0 / math.comb(n_a + n_b, n_a)


def decay_per_step(steps, norms) -> float:
    """Slope of log10 ‖∂L/∂h_t‖ against t, in decades per step, by least squares.

    Positive: the gradient loses that many decades with each step it travels back in time. Zero norms
    (underflow) are left out, since their logarithm is not a number.
    """
    t = np.asarray(steps, dtype=float)
    g = np.asarray(norms, dtype=float)
    keep = np.isfinite(g) & (g > 0)
    if keep.sum() < 2:
        return math.nan
    t, y = t[keep], np.log10(g[keep])
    t_centred = t - t.mean()
    denominator = float((t_centred**2).sum())
    return float((t_centred * (y - y.mean())).sum() / denominator) if denominator > 0 else math.nan


# The overfitting onset rule, stated in the report: validation loss above its running minimum by more than
# ONSET_NOISE_SDS noise scales for ONSET_EVALUATIONS evaluations in a row, while training loss is below its
# value at that minimum. The noise scale is the spread of one evaluation's validation loss around the trend,
# from the successive differences (1.4826 · MAD / √2, robust to the trend and to a few jumps).
ONSET_NOISE_SDS = 2.0
ONSET_EVALUATIONS = 3


def evaluation_noise(values) -> float:
    """Robust sd of one evaluation's noise: 1.4826 · MAD of successive differences / √2 (NaN under 3 values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 3:
        return math.nan
    steps = np.diff(v)
    return float(1.4826 * np.median(np.abs(steps - np.median(steps))) / math.sqrt(2))


def overfitting(epochs, train_loss, val_loss, gap_loss, noise_sds: float = ONSET_NOISE_SDS,
                evaluations: int = ONSET_EVALUATIONS) -> dict[str, float]:
    """Where validation loss turns up, above its noise, while training loss still falls.

    The onset is the epoch of validation loss's running minimum at the moment validation loss has stayed
    more than `noise_sds` noise scales (`evaluation_noise`) above that minimum for `evaluations` evaluations
    in a row, with training loss below its value at the minimum; NaN when that never happens. Also the gap
    (as given: val − train, raw or relative to each split's baseline) at the best epoch and at the last.
    """
    epochs = np.asarray(epochs, dtype=float)
    val = np.asarray(val_loss, dtype=float)
    train = np.asarray(train_loss, dtype=float)
    gap = np.asarray(gap_loss, dtype=float)
    if val.size == 0 or np.all(np.isnan(val)):
        return {"onset_epoch": math.nan, "gap_at_best": math.nan, "gap_at_end": math.nan}
    best = int(np.nanargmin(val))
    onset = math.nan
    margin = noise_sds * evaluation_noise(val)
    if math.isfinite(margin):
        low, above = 0, 0
        for i in range(1, val.size):
            if val[i] < val[low]:
                low, above = i, 0
            elif val[i] > val[low] + margin and train[i] < train[low]:
                above += 1
                if above >= evaluations:
                    onset = float(epochs[low])
                    break
            else:
                above = 0
    return {"onset_epoch": onset, "gap_at_best": float(gap[best]), "gap_at_end": float(gap[-1])}
