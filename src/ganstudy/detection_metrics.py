"""How well a real-vs-generated score detects, as the detection literature reports it: ROC-AUC and average
precision (real is the positive class), accuracy at a threshold, a threshold calibrated on other data, and
calibration (expected calibration error, the reliability curve). Pure functions of scores (logits or p_real:
higher is more real) and labels; calibration takes p_real."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def scores(real: np.ndarray, fake: np.ndarray, threshold: float, even: float = 0.0) -> dict[str, float]:
    """AUC, AP, accuracy at `even` (the score of p_real 0.5: 0 for logits) and at `threshold`, and the shares of
    reals called real and of fakes called generated at `threshold` (a score >= threshold: real)."""
    s, y = _stacked(real, fake)
    return {"auc": roc_auc(real, fake), "ap": float(average_precision_score(y, s)),
            "acc_05": accuracy(s, y, even), "acc": accuracy(s, y, threshold),
            "reals_called_real": float(np.mean(np.ravel(real) >= threshold)),
            "fakes_caught": float(np.mean(np.ravel(fake) < threshold))}


def roc_auc(real: np.ndarray, fake: np.ndarray) -> float:
    s, y = _stacked(real, fake)
    return float(roc_auc_score(y, s))


def _stacked(real, fake) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ravel(real), np.ravel(fake)], np.r_[np.ones(np.size(real)), np.zeros(np.size(fake))]


def accuracy(score: np.ndarray, y: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(score) >= threshold) == (np.asarray(y) == 1)))


def balanced_threshold(real: np.ndarray, fake: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (the mean of the shares of reals and of fakes called
    right): of the scores that reach it, the lowest, moved halfway down to the next lower score."""
    real, fake = np.sort(np.ravel(real)), np.sort(np.ravel(fake))
    candidates = np.unique(np.r_[real, fake])
    real_ok = 1 - np.searchsorted(real, candidates, side="left") / len(real)  # share >= t
    fake_ok = np.searchsorted(fake, candidates, side="left") / len(fake)      # share < t
    best = int(np.argmax(real_ok + fake_ok))
    return float(candidates[best] if best == 0 else (candidates[best] + candidates[best - 1]) / 2)


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
