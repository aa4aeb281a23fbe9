"""How well a real-vs-generated score detects, as the detection literature reports it: ROC-AUC and average
precision (real is the positive class), accuracy at a threshold, a threshold calibrated on other data, and
calibration (expected calibration error, the reliability curve). Pure functions of p_real and labels."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def scores(p_real_of_reals: np.ndarray, p_real_of_fakes: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, AP, accuracy at 0.5 and at `threshold`, and the shares of reals called real and of fakes called
    generated at `threshold` (p_real >= threshold: real)."""
    p, y = _stacked(p_real_of_reals, p_real_of_fakes)
    return {"auc": float(roc_auc_score(y, p)), "ap": float(average_precision_score(y, p)),
            "acc_05": accuracy(p, y, 0.5), "acc": accuracy(p, y, threshold),
            "reals_called_real": float(np.mean(np.ravel(p_real_of_reals) >= threshold)),
            "fakes_caught": float(np.mean(np.ravel(p_real_of_fakes) < threshold))}


def _stacked(reals, fakes) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ravel(reals), np.ravel(fakes)], np.r_[np.ones(np.size(reals)), np.zeros(np.size(fakes))]


def accuracy(p_real: np.ndarray, y: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(p_real) >= threshold) == (np.asarray(y) == 1)))


def balanced_threshold(p_real_of_reals: np.ndarray, p_real_of_fakes: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (mean of the shares of reals and of fakes called right),
    among the scores themselves; the lowest such one."""
    reals, fakes = np.sort(np.ravel(p_real_of_reals)), np.sort(np.ravel(p_real_of_fakes))
    candidates = np.unique(np.r_[reals, fakes])
    real_ok = 1 - np.searchsorted(reals, candidates, side="left") / len(reals)  # share >= t
    fake_ok = np.searchsorted(fakes, candidates, side="left") / len(fakes)      # share < t
    return float(candidates[np.argmax(real_ok + fake_ok)])


def reliability(p_real: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width bin of p_real with any score in it: its mean p_real, the share of reals in it, and its
    count (the reliability diagram's points)."""
    p, y = np.asarray(p_real, float), np.asarray(y, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [{"confidence": float(p[which == b].mean()), "share_real": float(y[which == b].mean()),
             "count": int(np.sum(which == b))} for b in range(bins) if np.any(which == b)]


def expected_calibration_error(p_real: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Σ_bins (count / n) · |share of reals − mean p_real| over equal-width bins of p_real (Naeini et al. 2015)."""
    points = reliability(p_real, y, bins)
    n = sum(b["count"] for b in points)
    return float(sum(b["count"] / n * abs(b["share_real"] - b["confidence"]) for b in points))
