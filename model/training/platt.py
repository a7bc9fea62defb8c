"""Decide whether validation probabilities need calibrating, and fit Platt scaling on validation patients.

Rule: calibrate when the expected calibration error (ECE, 10 equal-width bins) on validation exceeds
ECE_LIMIT = 0.05, validation holds both classes, and the fitted slope is positive (a negative slope would
reverse the model's ranking, which calibration must never do). Platt scaling (two parameters) suits the
small validation sets of this project better than isotonic regression.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from model.calibration import calibrate, logit

ECE_LIMIT = 0.05
BINS = 10
RULE = f"Platt scaling fitted on validation patients when validation ECE ({BINS} bins) > {ECE_LIMIT}"


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = BINS) -> float:
    """Mean |observed positive rate - mean probability| over equal-width bins, weighted by bin size."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(probs, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    gaps = np.abs(np.bincount(index, y, bins) - np.bincount(index, p, bins))
    return float(gaps.sum() / max(counts.sum(), 1))


def fit_platt(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """(a, b) of sigmoid(a * logit(p) + b), fitted with Platt's (1999) smoothed targets.

    Positives aim at (n+ + 1) / (n+ + 2) and negatives at 1 / (n- + 2), so a small, perfectly separated
    validation set gives a finite slope instead of an infinitely confident one. The soft targets are fitted
    as an unpenalised logistic regression on each image twice, once per label, weighted by its target.
    """
    y = np.asarray(y_true, dtype=int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    x = np.tile(logit(probs), 2).reshape(-1, 1)
    labels = np.r_[np.ones(len(y)), np.zeros(len(y))]
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(x, labels, sample_weight=np.r_[target, 1 - target])
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _quality(y: np.ndarray, p: np.ndarray) -> dict:
    """Brier score and ECE of probabilities p for labels y."""
    return {"brier": float(brier_score_loss(y, p)), "ece": expected_calibration_error(y, p)}


def choose_calibration(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """The card's `calibration` entry for these validation predictions: Platt parameters or method "none"."""
    y, p = np.asarray(y_true, dtype=int), np.asarray(probs, dtype=float)
    before = _quality(y, p) if len(y) else {}
    if len(np.unique(y)) < 2:
        return {"method": "none", "rule": RULE, "reason": "validation holds one class only", **before}
    if before["ece"] <= ECE_LIMIT:
        reason = f"validation ECE {before['ece']:.3f} <= {ECE_LIMIT}"
        return {"method": "none", "rule": RULE, "reason": reason, **before}
    a, b = fit_platt(y, p)
    if a <= 0:
        return {"method": "none", "rule": RULE, "reason": f"Platt slope {a:.3f} <= 0 would reverse the ranking",
                **before}
    after = _quality(y, calibrate(p, {"method": "platt", "a": a, "b": b}))
    return {"method": "platt", "a": a, "b": b, "rule": RULE, "fitted_on": "validation patients",
            "brier_before": before["brier"], "brier_after": after["brier"],
            "ece_before": before["ece"], "ece_after": after["ece"]}
