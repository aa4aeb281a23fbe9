import math

import numpy as np
import pytest
from scipy.linalg import sqrtm
from scipy.spatial.distance import cdist

from ganstudy.metrics import class_kl, fid, kid, knn_radii, mnist_score, modes_covered, precision_recall


def _rng(seed=0):
    return np.random.default_rng(seed)


def _logits_for(labels, n_classes=10, scale=5.0, seed=0):
    """Logits whose argmax is `labels`, with a little noise."""
    noise = _rng(seed).uniform(-0.5, 0.5, size=(len(labels), n_classes))
    return scale * np.eye(n_classes)[labels] + noise


# --- FID ---------------------------------------------------------------------

def _fid_sqrtm(x, y):
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = sqrtm(s_x @ s_y).real
    return float(np.sum((mu_x - mu_y) ** 2) + np.trace(s_x + s_y - 2 * covmean))


def _with_exact_moments(z, mean, var):
    """Affinely map z so its sample mean is `mean` and sample covariance is diag(var)."""
    z = z - z.mean(0)
    chol = np.linalg.cholesky(np.cov(z, rowvar=False))
    white = np.linalg.solve(chol, z.T).T  # sample covariance exactly I
    return white * np.sqrt(var) + mean


def test_fid_matches_sqrtm_reference():
    rng = _rng(1)
    d = 8
    x = rng.normal(size=(400, d)) @ rng.normal(size=(d, d))
    y = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    assert fid(x, y) == pytest.approx(_fid_sqrtm(x, y), rel=1e-6)


def test_fid_identical_sets_is_zero():
    x = _rng(2).normal(size=(500, 16))
    assert abs(fid(x, x)) < 1e-8


def test_fid_diagonal_closed_form():
    rng = _rng(3)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.2, 3.0, size=d), rng.uniform(0.2, 3.0, size=d)
    x = _with_exact_moments(rng.normal(size=(1000, d)), mu1, s1)
    y = _with_exact_moments(rng.normal(size=(800, d)), mu2, s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert fid(x, y) == pytest.approx(expected, rel=1e-8)


def test_fid_real_vs_noise_is_large():
    rng = _rng(4)
    real = rng.normal(size=(1000, 10))
    same = rng.normal(size=(1000, 10))
    noise = rng.uniform(-5, 5, size=(1000, 10)) + 3
    assert fid(real, noise) > 100 * fid(real, same)
    assert fid(real, noise) > 50


# --- KID ---------------------------------------------------------------------

def _mmd2_unbiased_loops(x, y):
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_bruteforce_single_full_subset():
    rng = _rng(5)
    x = rng.normal(size=(40, 5))
    y = rng.normal(loc=0.3, scale=1.2, size=(40, 5))
    got = kid(x, y, n_subsets=1, subset_size=1000)
    assert got == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-9)


def test_kid_same_distribution_near_zero_different_positive():
    rng = _rng(6)
    x = rng.normal(size=(1500, 16))
    y = rng.normal(size=(1500, 16))
    z = rng.normal(loc=0.5, size=(1500, 16))
    same = kid(x, y, n_subsets=5, subset_size=500)
    diff = kid(x, z, n_subsets=5, subset_size=500)
    assert diff > 0.1
    assert abs(same) < 0.05 * diff


# --- MNIST score ---------------------------------------------------------------

def test_mnist_score_confident_and_balanced_is_num_classes():
    logits = 30.0 * np.eye(10)[np.arange(1000) % 10]
    assert mnist_score(logits) == pytest.approx(10.0, rel=1e-6)


def test_mnist_score_collapse_is_one():
    logits = _logits_for(np.full(500, 3), scale=30.0)
    assert mnist_score(logits) == pytest.approx(1.0, abs=1e-6)


def test_mnist_score_hand_computed():
    logits = [[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    probs = [[math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))]
             for a, b in logits]
    marginal = [sum(p[c] for p in probs) / 3 for c in range(2)]
    mean_kl = sum(sum(p[c] * math.log(p[c] / marginal[c]) for c in range(2)) for p in probs) / 3
    assert mnist_score(np.array(logits)) == pytest.approx(math.exp(mean_kl), rel=1e-12)


def test_mnist_score_huge_logits_are_stable():
    logits = 1e4 * np.eye(10)[np.arange(100) % 5]  # classes 5..9 never predicted
    assert mnist_score(logits) == pytest.approx(5.0, rel=1e-9)


# --- precision / recall --------------------------------------------------------

def _pr_bruteforce(real, fake, k):
    def radii(a):
        return np.array([np.sort(cdist(a[i:i + 1], a)[0])[k] for i in range(len(a))])

    def covered(centers, r, queries):
        d = cdist(queries, centers)
        return np.mean([np.any(d[q] <= r) for q in range(len(queries))])

    return covered(real, radii(real), fake), covered(fake, radii(fake), real)


@pytest.mark.parametrize("n_real,n_fake,k", [(60, 45, 3), (80, 80, 1), (50, 70, 5)])
def test_precision_recall_matches_bruteforce(n_real, n_fake, k):
    rng = _rng(7)
    real = rng.normal(size=(n_real, 4))
    fake = rng.normal(loc=1.0, scale=0.8, size=(n_fake, 4))
    p, r = precision_recall(real, fake, k=k)
    p_ref, r_ref = _pr_bruteforce(real, fake, k)
    assert 0 < p_ref < 1 and 0 < r_ref < 1  # non-trivial case
    assert (p, r) == pytest.approx((p_ref, r_ref), abs=1e-12)


def test_precision_recall_chunked_matches_cdist():
    rng = _rng(8)
    real = rng.normal(size=(2300, 6))
    fake = rng.normal(loc=0.4, size=(1700, 6))
    k = 3
    r_real = np.sort(cdist(real, real), axis=1)[:, k]
    r_fake = np.sort(cdist(fake, fake), axis=1)[:, k]
    p_ref = np.mean(np.any(cdist(fake, real) <= r_real[None, :], axis=1))
    r_ref = np.mean(np.any(cdist(real, fake) <= r_fake[None, :], axis=1))
    assert precision_recall(real, fake, k=k) == pytest.approx((p_ref, r_ref), abs=1e-12)


def test_precomputed_reference_radii_give_the_same_answer():
    rng = _rng(11)
    real, fake = rng.normal(size=(300, 5)), rng.normal(loc=0.3, size=(300, 5))
    radii = knn_radii(real, 3)
    assert radii == pytest.approx(np.sort(cdist(real, real), axis=1)[:, 3], abs=1e-12)
    assert precision_recall(real, fake, real_radii=radii) == precision_recall(real, fake)


def test_precision_recall_identical_sets():
    x = _rng(9).normal(size=(200, 8))
    assert precision_recall(x, x.copy()) == (1.0, 1.0)


def test_precision_recall_disjoint_clusters():
    rng = _rng(10)
    real = rng.normal(size=(100, 5))
    fake = rng.normal(size=(100, 5)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


# --- mode coverage -------------------------------------------------------------

def test_modes_and_class_kl_known_histogram():
    counts = [30, 25, 20, 10, 6, 4, 3, 2, 0, 0]
    labels = np.repeat(np.arange(10), counts)
    logits = _logits_for(_rng(11).permutation(labels))
    assert modes_covered(logits) == 5  # shares >= 0.05: 0.30, 0.25, 0.20, 0.10, 0.06
    assert modes_covered(logits, min_share=0.02) == 8
    expected_kl = sum(c / 100 * math.log(c / 100 * 10) for c in counts if c > 0)
    assert class_kl(logits) == pytest.approx(expected_kl, rel=1e-12)


def test_modes_and_class_kl_balanced():
    logits = _logits_for(np.arange(1000) % 10)
    assert modes_covered(logits) == 10
    assert class_kl(logits) == pytest.approx(0.0, abs=1e-12)


def test_modes_and_class_kl_collapse():
    logits = _logits_for(np.full(300, 7))
    assert modes_covered(logits) == 1
    assert class_kl(logits) == pytest.approx(math.log(10), rel=1e-12)
