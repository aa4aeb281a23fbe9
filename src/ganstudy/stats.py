"""The statistics a study's answer rests on: a comparison's summary per arm, Welch's test, a confidence interval
of a ratio of means (a t-interval on its log), and the expected best value after k trials (Dodge et al. 2019,
"Show Your Work")."""
from __future__ import annotations

import numpy as np

from ganstudy.study_results import BUDGETS


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value of a difference in means (None with fewer than 2 values a side)."""
    if min(len(a), len(b)) < 2:
        return None
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def ratio_interval(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Confidence interval of mean(a) / mean(b): a Welch t-interval on the log of the ratio, exp(log r ± t·se),
    with se² = s_a²/(n_a·mean_a²) + s_b²/(n_b·mean_b²) (the delta method) and the Welch–Satterthwaite degrees of
    freedom of those two terms. A study's arms have 2 or 3 seeds: a percentile bootstrap then has at most 10
    distinct resamples an arm and an interval far narrower than the data support; the t quantile at 2–4 degrees
    of freedom widens it as it should. None with fewer than 2 values a side (no spread), or when either mean is
    not positive (no log; the ratio of a quantity that can be <= 0, such as a negated score, is not a size)."""
    if min(len(a), len(b)) < 2:
        return None
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.mean() <= 0 or b.mean() <= 0:
        return None
    from scipy.stats import t as student_t

    va, vb = a.var(ddof=1) / (len(a) * a.mean() ** 2), b.var(ddof=1) / (len(b) * b.mean() ** 2)
    log_ratio, se = np.log(a.mean() / b.mean()), np.sqrt(va + vb)
    if se == 0:  # every seed alike on both sides: the ratio itself, no spread to widen it
        return float(np.exp(log_ratio)), float(np.exp(log_ratio))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = student_t.ppf(0.5 + confidence / 2, df) * se
    return float(np.exp(log_ratio - half)), float(np.exp(log_ratio + half))


def best_of_k(values: list[float], k: int, minimize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The distribution of the best of k trials drawn with replacement from these trials' values: (the values,
    best first; the probability that each is the best of the k)."""
    v = np.sort(np.asarray(values, float))
    if not minimize:
        v = v[::-1]
    n = len(v)
    # P(best of k is the i-th best value) = P(all k at rank >= i) - P(all k at rank >= i + 1)
    at_or_worse = (np.arange(n, 0, -1) / n) ** k
    return v, at_or_worse - np.append(at_or_worse[1:], 0.0)


def expected_best(values: list[float], k: int, minimize: bool = True) -> tuple[float, float]:
    """(mean, std) of the best of k trials drawn with replacement from these trials' values: the expected
    best a budget of k trials buys, estimated from the trials themselves (Dodge et al. 2019, eq. 1)."""
    v, p = best_of_k(values, k, minimize)
    mean = float(p @ v)
    return mean, float(np.sqrt(max(p @ v**2 - mean**2, 0.0)))


def best_of_k_range(values: list[float], k: int, minimize: bool = True, mass: float = 0.8) -> tuple[float, float]:
    """The central `mass` of the best of k's distribution (by default its 10th to 90th percentile), as values
    the trials reached: unlike mean ± std it never leaves the trials' own range (a std band on a skewed
    distribution can dip below what any trial, or real images, scored)."""
    v, p = best_of_k(values, k, minimize)
    cumulative = np.cumsum(p)
    tail = (1 - mass) / 2
    first = int(np.searchsorted(cumulative, tail - 1e-12))
    last = int(np.searchsorted(cumulative, 1 - tail - 1e-12))
    a, b = float(v[first]), float(v[min(last, len(v) - 1)])
    return (a, b) if minimize else (b, a)


def summarize(outcomes: dict[str, dict[int, tuple]]) -> dict[str, dict]:
    """Per arm: mean and sample std of the objective over the seeds that counted (`n` of them), what they spent
    on average (`budget`: epochs, updates, images, train_seconds), and the seeds that failed; per opponent: the
    best arm's ratio of means with its 95% t-interval (ratio_interval), and the Welch p-value. The first arm is
    the reference."""
    out = {}
    for arm, seeds in outcomes.items():
        counted = {s: m for s, (m, _) in sorted(seeds.items()) if m is not None}
        v = [m["objective"] for m in counted.values()]
        spent = {k: [m[k] for m in counted.values() if m.get(k) is not None] for k in BUDGETS}
        out[arm] = {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                    "values": v, "seeds": list(counted), "budget": {k: float(np.mean(x)) for k, x in spent.items() if x},
                    "failed": {s: why for s, (_, why) in sorted(seeds.items()) if why}}
    return against_reference(out)


def against_reference(summary: dict[str, dict]) -> dict[str, dict]:
    """Each arm's n (seeds that counted) and, for every arm after the first (the reference), the reference's ratio
    of means, its 95% t-interval and the Welch p-value, from the arms' values. Also restates a summary written
    before n was recorded, whose interval was a percentile bootstrap."""
    arms = list(summary)
    best = summary[arms[0]]["values"]
    for arm in arms:
        summary[arm]["n"] = len(summary[arm]["values"])
    for arm in arms[1:]:
        other = summary[arm]["values"]
        both = bool(best) and bool(other)
        summary[arm]["ratio"] = summary[arms[0]]["mean"] / summary[arm]["mean"] if both else None
        summary[arm]["ratio_ci"] = ratio_interval(best, other) if both else None
        summary[arm]["p_value"] = welch_p(best, other) if both else None
    return summary
