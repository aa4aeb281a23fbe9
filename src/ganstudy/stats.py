"""The statistics a study's answer rests on: a comparison's summary per arm, Welch's test, a confidence interval
of a ratio of means, and the expected best value after k trials (Dodge et al. 2019, "Show Your Work")."""
from __future__ import annotations

import numpy as np

from ganstudy.study_results import BUDGETS


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


def summarize(outcomes: dict[str, dict[int, tuple]]) -> dict[str, dict]:
    """Per arm: mean and sample std of the objective over the seeds that counted, what they spent on average
    (`budget`: epochs, updates, images, train_seconds), and the seeds that failed; per opponent: the best arm's
    ratio of means with its 95% bootstrap interval, and the Welch p-value. The first arm is the reference."""
    out = {}
    for arm, seeds in outcomes.items():
        counted = {s: m for s, (m, _) in sorted(seeds.items()) if m is not None}
        v = [m["objective"] for m in counted.values()]
        spent = {k: [m[k] for m in counted.values() if m.get(k) is not None] for k in BUDGETS}
        out[arm] = {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                    "values": v, "seeds": list(counted), "budget": {k: float(np.mean(x)) for k, x in spent.items() if x},
                    "failed": {s: why for s, (_, why) in sorted(seeds.items()) if why}}
    reference = next(iter(outcomes))
    best = out[reference]["values"]
    for arm in list(outcomes)[1:]:
        other = out[arm]["values"]
        both = bool(best) and bool(other)
        out[arm]["ratio"] = out[reference]["mean"] / out[arm]["mean"] if both else None
        out[arm]["ratio_ci"] = ratio_interval(best, other) if both else None
        out[arm]["p_value"] = welch_p(best, other) if both else None
    return out
