"""Uncertainty for the faithfulness table: bootstrap CIs of means and paired tests between models.

Fixed seeds everywhere, so the same cache always gives the same report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
_MAX_DRAWS = 20_000_000  # n x resamples above this: the normal approximation (equal for large n, and fast)
PAIRED_TEST_NAME = "Wilcoxon signed-rank (two-sided, scipy.stats.wilcoxon, zero differences dropped)"


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    method: str  # "bootstrap" or "normal"


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, groups: np.ndarray | None = None) -> Interval | None:
    """Percentile bootstrap CI of the mean; None for fewer than 2 values (or groups).

    groups (one label per value, e.g. the patient): whole groups are resampled, since slices of one patient
    are not independent and resampling slices would make the interval too narrow."""
    x = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x)
    x = x[keep]
    n = len(x)
    if n < 2:
        return None
    inv = _shared_groups(groups, keep)
    if inv is not None:
        return _cluster_ci(x, inv, level, resamples, seed)
    alpha = (1 - level) / 2
    if n * resamples > _MAX_DRAWS:
        half = 1.959963984540054 * x.std(ddof=1) / np.sqrt(n)
        return Interval(float(x.mean() - half), float(x.mean() + half), "normal")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, (resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(lo), float(hi), "bootstrap")


def _shared_groups(groups: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    """Each kept value's group number, where some group holds several values; None where every value stands
    alone (or no groups are given): then the values themselves are the units."""
    if groups is None or not keep.any():
        return None
    _, inv = np.unique(np.asarray(groups)[keep], return_inverse=True)
    return inv if inv.max() + 1 < len(inv) else None


def _cluster_ci(x: np.ndarray, inv: np.ndarray, level: float, resamples: int, seed: int) -> Interval | None:
    """The mean's CI with whole groups drawn: each draw's mean is its groups' sum over their count."""
    sums, counts = np.bincount(inv, weights=x), np.bincount(inv).astype(np.float64)
    g = len(sums)
    if g < 2:
        return None
    alpha = (1 - level) / 2
    if g * resamples > _MAX_DRAWS:  # the cluster-robust normal approximation
        mean = sums.sum() / counts.sum()
        se = np.sqrt(g / (g - 1) * ((sums - mean * counts) ** 2).sum()) / counts.sum()
        return Interval(float(mean - 1.959963984540054 * se), float(mean + 1.959963984540054 * se), "normal")
    draws = np.random.default_rng(seed).integers(0, g, (resamples, g))
    lo, hi = np.quantile(sums[draws].sum(1) / counts[draws].sum(1), [alpha, 1 - alpha])
    return Interval(float(lo), float(hi), "bootstrap")


@dataclass(frozen=True)
class PairedResult:
    n: int  # cases where both models have a value
    mean_diff: float | None  # mean of a - b; None where no case has both
    statistic: float | None
    p: float | None  # None where the test cannot run (too few or all-zero differences)


def paired_test(a: np.ndarray, b: np.ndarray, groups: np.ndarray | None = None) -> PairedResult:
    """Wilcoxon signed-rank test on the cases both arrays have (same case order). groups (each case's patient):
    where a patient has several slices, the test runs on each patient's mean difference, since slices of one
    patient are not independent; n and the mean difference stay those of the cases."""
    from scipy.stats import wilcoxon  # scipy comes with scikit-image; imported only when a report is made

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    d = a[both] - b[both]
    n = int(both.sum())
    if n == 0:
        return PairedResult(0, None, None, None)
    inv = _shared_groups(groups, both)
    d_units = d if inv is None else np.bincount(inv, weights=d) / np.bincount(inv)  # each patient's mean
    if np.count_nonzero(d_units) < 2:
        return PairedResult(n, float(d.mean()), None, None)
    res = wilcoxon(d_units, zero_method="wilcox", alternative="two-sided")
    return PairedResult(n, float(d.mean()), float(res.statistic), float(res.pvalue))


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values over one family of tests; None stays None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        out[i] = running
    return out
