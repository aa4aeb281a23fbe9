"""The statistics a study's answer rests on: Welch's test, a confidence interval of a ratio of means, and the
expected best value after k trials (Dodge et al. 2019, "Show Your Work")."""
from __future__ import annotations

import numpy as np


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of a difference in means (None with fewer than 2 values a side)."""
    if min(len(a), len(b)) < 2:
        return None
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def ratio_interval(a: list[float], b: list[float], confidence: float = 0.95, n_boot: int = 10_000,
                   seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of mean(a) / mean(b), resampling each arm's seeds independently
    (None with fewer than 2 values a side: no spread to resample)."""
    if min(len(a), len(b)) < 2:
        return None
    from scipy.stats import bootstrap

    res = bootstrap((np.asarray(a, float), np.asarray(b, float)), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis),
                    n_resamples=n_boot, confidence_level=confidence, method="percentile", vectorized=True,
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def expected_best(values: list[float], k: int, minimize: bool = True) -> tuple[float, float]:
    """(mean, std) of the best of k trials drawn with replacement from these trials' values: the expected
    best a budget of k trials buys, estimated from the trials themselves (Dodge et al. 2019, eq. 1)."""
    v = np.sort(np.asarray(values, float))
    if not minimize:
        v = v[::-1]
    n = len(v)
    # P(best of k is the i-th best value) = P(all k at rank >= i) - P(all k at rank >= i + 1)
    at_or_worse = (np.arange(n, 0, -1) / n) ** k
    p = at_or_worse - np.append(at_or_worse[1:], 0.0)
    mean = float(p @ v)
    return mean, float(np.sqrt(max(p @ v**2 - mean**2, 0.0)))
