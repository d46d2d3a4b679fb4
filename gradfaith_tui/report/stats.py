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
                 seed: int = BOOTSTRAP_SEED) -> Interval | None:
    """Percentile bootstrap CI of the mean; None for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return None
    alpha = (1 - level) / 2
    if n * resamples > _MAX_DRAWS:
        half = 1.959963984540054 * x.std(ddof=1) / np.sqrt(n)
        return Interval(float(x.mean() - half), float(x.mean() + half), "normal")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, (resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(lo), float(hi), "bootstrap")


@dataclass(frozen=True)
class PairedResult:
    n: int  # cases where both models have a value
    mean_diff: float  # mean of a - b
    statistic: float | None
    p: float | None  # None where the test cannot run (too few or all-zero differences)


def paired_test(a: np.ndarray, b: np.ndarray) -> PairedResult:
    """Wilcoxon signed-rank test on the cases both arrays have (same case order)."""
    from scipy.stats import wilcoxon  # scipy comes with scikit-image; imported only when a report is made

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    d = a[both] - b[both]
    n = int(both.sum())
    if n == 0:
        return PairedResult(0, float("nan"), None, None)
    if np.count_nonzero(d) < 2:
        return PairedResult(n, float(d.mean()), None, None)
    res = wilcoxon(a[both], b[both], zero_method="wilcox", alternative="two-sided")
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
