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
    "mannwhitney": "Mann–Whitney U test (two-sided, exact for small samples)",
}


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
    if test == "welch":
        if a.std() == 0 and b.std() == 0:
            # no spread at all: identical constants are not different, different constants certainly are
            return 1.0 if a[0] == b[0] else 0.0
        return float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    return float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: controls the family-wise error rate over the family given.

    Adjusted p for the k-th smallest of m: max over j ≤ k of (m − j + 1)·p_(j), capped at 1. NaNs stay NaN
    and do not count towards m.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
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


def overfitting(epochs, train_loss, val_loss, gap_loss, rise: float = 0.01) -> dict[str, float]:
    """Where validation loss turns up while training loss still falls.

    The onset is the epoch of lowest validation loss, counted only when afterwards validation loss ends more
    than `rise` (relative) above its minimum while training loss ends below its value there; otherwise NaN
    (no overfitting seen). Also the gap (val − train loss) at that best epoch and at the last epoch.
    """
    epochs = np.asarray(epochs, dtype=float)
    val = np.asarray(val_loss, dtype=float)
    train = np.asarray(train_loss, dtype=float)
    gap = np.asarray(gap_loss, dtype=float)
    if val.size == 0 or np.all(np.isnan(val)):
        return {"onset_epoch": math.nan, "gap_at_best": math.nan, "gap_at_end": math.nan}
    best = int(np.nanargmin(val))
    onset = math.nan
    if best < val.size - 1 and val[-1] > val[best] * (1 + rise) + 1e-12 and train[-1] < train[best]:
        onset = float(epochs[best])
    return {"onset_epoch": onset, "gap_at_best": float(gap[best]), "gap_at_end": float(gap[-1])}
