import itertools

import numpy as np
import pytest
from scipy.stats import t as student_t

from ganstudy.stats import expected_best, ratio_interval, welch_p


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


def test_ratio_interval_matches_exhaustive_bootstrap():
    a, b = [30.0, 33.0, 35.0], [60.0, 66.0, 61.0]
    # the percentile bootstrap's exact distribution: every resample of each arm, equally likely
    ratios = np.sort([np.mean(ra) / np.mean(rb) for ra in itertools.product(a, repeat=3)
                      for rb in itertools.product(b, repeat=3)])
    low, high = ratio_interval(a, b, n_boot=40_000)
    assert low == pytest.approx(np.quantile(ratios, 0.025), abs=0.004)
    assert high == pytest.approx(np.quantile(ratios, 0.975), abs=0.004)
    assert low < np.mean(a) / np.mean(b) < high


def test_ratio_interval_and_welch_need_two_values_a_side():
    assert ratio_interval([1.0], [2.0, 3.0]) is None
    assert welch_p([1.0, 2.0], [3.0]) is None
    a, b = np.array([1.0, 2.0, 2.5]), np.array([3.0, 4.0])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)  # Welch's t and Welch-Satterthwaite df, by hand
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert welch_p(list(a), list(b)) == pytest.approx(2 * student_t.sf(abs(t), df))
