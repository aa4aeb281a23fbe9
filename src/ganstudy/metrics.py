"""Sample-quality metrics computed from a frozen MNIST classifier's features/logits.

Pure functions of features (numpy, with scikit-learn's k-NN and kernels), in the style of TF-GAN: FID, KID, classifier ("MNIST") score,
improved precision/recall, and mode-coverage statistics of predicted classes.
"""

import numpy as np
from sklearn.metrics.pairwise import polynomial_kernel

_CHUNK = 1000  # rows per block of pairwise distances (1000 x 10000 float64 = 80 MB)


def fid(real_features, fake_features):
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(fake_features, dtype=np.float64)
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    cov_x = np.atleast_2d(np.cov(x, rowvar=False))
    cov_y = np.atleast_2d(np.cov(y, rowvar=False))
    w, v = np.linalg.eigh(cov_x)
    sqrt_x = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = sqrt_x @ cov_y @ sqrt_x
    # Tr sqrt(S1 S2) = Tr sqrt(sqrt(S1) S2 sqrt(S1)), the latter symmetric PSD.
    tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
    diff = mu_x - mu_y
    return float(diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2 * tr_covmean)


def kid(real_features, fake_features, n_subsets=10, subset_size=1000, seed=0):
    """Unbiased MMD^2 with kernel (x.y/D + 1)^3, averaged over random subsets."""
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(fake_features, dtype=np.float64)
    d = x.shape[1]
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_subsets):
        xs = x[rng.choice(len(x), m, replace=False)]
        ys = y[rng.choice(len(y), m, replace=False)]
        k_xx, k_yy, k_xy = (polynomial_kernel(a, b, degree=3, gamma=1 / d, coef0=1)
                            for a, b in ((xs, xs), (ys, ys), (xs, ys)))
        off_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        off_yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        scores.append(off_xx + off_yy - 2 * k_xy.mean())
    return float(np.mean(scores))


def mnist_score(logits):
    """Classifier score exp(E_x KL(p(y|x) || p(y))) from (N, C) logits; at most C."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    # Clip so that a class with p(y) underflowing to 0 contributes 0, not 0 * inf.
    log_py = np.log(np.maximum(p.mean(axis=0), np.finfo(np.float64).tiny))
    return float(np.exp(np.mean(np.sum(p * (log_p - log_py), axis=1))))


def _sq_dists(a, b):
    """Squared Euclidean distances between rows of a and b, clipped at 0."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d2, 0)


def knn_radii(features, k=3):
    """Distance from each row to its k-th nearest other row: the radii of precision/recall's k-NN balls."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=np.float64)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return distances[:, k]  # column 0 is the row itself


def _fraction_covered(centers, radii, queries):
    """Fraction of queries inside at least one ball (centers, radii)."""
    hits = 0
    for s in range(0, len(queries), _CHUNK):
        d2 = _sq_dists(queries[s:s + _CHUNK], centers)
        hits += int(np.any(d2 <= (radii**2)[None, :], axis=1).sum())
    return hits / len(queries)


def precision_recall(real_features, fake_features, k=3, real_radii=None):
    """Improved precision/recall (Kynkäänniemi et al. 2019) with k-NN balls; the method assumes as many real as
    generated features. `real_radii` (knn_radii of the real features) saves recomputing a fixed reference's."""
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(fake_features, dtype=np.float64)
    precision = _fraction_covered(x, knn_radii(x, k) if real_radii is None else real_radii, y)
    recall = _fraction_covered(y, knn_radii(y, k), x)
    return float(precision), float(recall)


def _class_shares(logits):
    """Share of argmax predictions falling in each of the C classes."""
    logits = np.asarray(logits)
    counts = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1])
    return counts / counts.sum()


def modes_covered(logits, min_share=0.05):
    """Number of classes receiving at least min_share of argmax predictions."""
    return int(np.sum(_class_shares(logits) >= min_share))


def class_kl(logits):
    """KL(predicted-class histogram || uniform); 0 if balanced, log(C) if collapsed."""
    p = _class_shares(logits)
    nz = p[p > 0]
    return float(np.sum(nz * np.log(nz * len(p))))
