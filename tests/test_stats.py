import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import t as student_t

from ganstudy.stats import expected_best, ratio_interval, summarize, welch_p


@pytest.mark.parametrize("minimize", [True, False])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_expected_best_matches_brute_force_enumeration(k, minimize):
    values = [5.0, 2.0, 7.0, 2.0, 9.5]
    pick = min if minimize else max
    # every ordered draw of k trials with replacement is equally likely
    bests = [pick(draw) for draw in itertools.product(values, repeat=k)]
    mean, std = expected_best(values, k, minimize)
    assert mean == pytest.approx(np.mean(bests))
    assert std == pytest.approx(np.std(bests))


def test_expected_best_of_one_value_and_of_many_draws():
    assert expected_best([3.0], 4) == (3.0, 0.0)
    mean, std = expected_best([1.0, 2.0, 3.0], 200)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


def test_ratio_interval_by_hand():
    """a = 1, 2, 3 and b = 4, 6, 8: means 2 and 6, variances 1 and 4, so the log ratio's squared standard error is
    1/(3·2²) + 4/(3·6²) = 1/12 + 1/27 = 13/108, on Welch–Satterthwaite degrees of freedom of those two terms."""
    va, vb = Fraction(1, 12), Fraction(1, 27)
    df = float((va + vb) ** 2 / (va**2 / 2 + vb**2 / 2))
    half = student_t.ppf(0.975, df) * math.sqrt(13 / 108)
    low, high = ratio_interval([1.0, 2.0, 3.0], [4.0, 6.0, 8.0])
    assert low == pytest.approx(math.exp(-half) / 3) and high == pytest.approx(math.exp(half) / 3)


def test_ratio_interval_is_the_delta_method_t_interval_of_the_log_ratio():
    a, b = [29.6, 32.1, 29.6, 31.0], [66.6, 62.7, 61.0]
    # the same interval from each arm's relative standard error of its mean (se / mean), unequal n
    rel = [np.std(x, ddof=1) / np.sqrt(len(x)) / np.mean(x) for x in (a, b)]
    df = sum(r**2 for r in rel) ** 2 / sum(r**4 / (len(x) - 1) for r, x in zip(rel, (a, b)))
    log_low, log_high = student_t.interval(0.9, df, loc=np.log(np.mean(a) / np.mean(b)), scale=np.hypot(*rel))
    assert ratio_interval(a, b, confidence=0.9) == pytest.approx((np.exp(log_low), np.exp(log_high)))


def test_ratio_interval_widens_as_the_seeds_get_fewer():
    """Samples of the same means and standard deviations: fewer seeds, fewer degrees of freedom and a larger
    standard error, so a wider interval."""
    def sample(mean, std, n):
        z = np.arange(n) - (n - 1) / 2
        return list(mean + std * z / np.std(z, ddof=1))

    widths = [np.log(high / low) for low, high in
              (ratio_interval(sample(30, 1.5, n), sample(63, 3, n)) for n in (10, 5, 3, 2))]
    assert all(w1 < w2 for w1, w2 in zip(widths, widths[1:]))
    # from 3 seeds to 2 the standard error grows by sqrt(3/2); the t quantile (about 2 df against 4) by 1.5 more
    assert widths[-1] / widths[-2] > np.sqrt(3 / 2) * 1.4


def test_ratio_interval_covers_the_true_ratio_95_percent_of_the_time_at_three_seeds():
    """Normal seeds around FIDs of 30 and 63, 3 a side: the interval holds the true ratio about 95% of the time
    (the percentile bootstrap it replaced held it about 80% of the time here)."""
    rng = np.random.default_rng(0)
    hits = [low <= 30 / 63 <= high for low, high in
            (ratio_interval(rng.normal(30, 1.5, 3), rng.normal(63, 3, 3)) for _ in range(2000))]
    assert 0.94 <= np.mean(hits) <= 0.98


def test_ratio_interval_and_welch_need_two_values_a_side():
    assert ratio_interval([1.0], [2.0, 3.0]) is None
    assert ratio_interval([1.0, 2.0], [3.0]) is None
    assert welch_p([1.0, 2.0], [3.0]) is None
    a, b = np.array([1.0, 2.0, 2.5]), np.array([3.0, 4.0])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)  # Welch's t and Welch-Satterthwaite df, by hand
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert welch_p(list(a), list(b)) == pytest.approx(2 * student_t.sf(abs(t), df))


def test_no_interval_of_a_ratio_whose_means_are_not_positive():
    """A log ratio needs positive means: the ratio of negated scores is no size (2 here means better, not worse)."""
    assert ratio_interval([-2.1, -1.9], [-1.1, -0.9]) is None
    assert ratio_interval([0.0, 0.0], [1.0, 2.0]) is None
    assert ratio_interval([2.0, 2.0], [4.0, 4.0]) == (0.5, 0.5)  # no spread on either side: the ratio alone


def test_summarize_gives_each_arm_its_n_and_each_opponent_the_t_interval():
    seeds = {"best": {1: 30.0, 2: 33.0, 3: 35.0}, "quick": {1: 60.0, 2: 66.0, 3: None}, "one": {1: 400.0}}
    summary = summarize({arm: {s: (None, "nan") if v is None else ({"objective": v}, None) for s, v in by_seed.items()}
                         for arm, by_seed in seeds.items()})
    assert [summary[arm]["n"] for arm in seeds] == [3, 2, 1]  # the failed seed does not count
    assert summary["quick"]["ratio_ci"] == pytest.approx(ratio_interval([30.0, 33.0, 35.0], [60.0, 66.0]))
    assert summary["one"]["ratio_ci"] is None and summary["one"]["ratio"] == pytest.approx(98 / 3 / 400)
