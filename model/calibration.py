"""Apply a model card's probability calibration: plain numbers from the card, numpy only (serving uses it).

`card.calibration` is empty or has method "none" (identity), or {"method": "platt", "a": A, "b": B}:
calibrated = sigmoid(A * logit(p) + B), fitted on validation patients by model/training/platt.py.
"""

from __future__ import annotations

import numpy as np

PROB_EPSILON = 1e-7


def logit(probs: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probs, dtype="float64"), PROB_EPSILON, 1 - PROB_EPSILON)
    return np.log(p) - np.log1p(-p)


def calibrate(probs: float | np.ndarray, calibration: dict | None) -> float | np.ndarray:
    """The calibrated probability (same shape as `probs`); identity when `calibration` is empty or "none"."""
    method = (calibration or {}).get("method", "none")
    if method == "none":
        return probs
    if method != "platt":
        raise ValueError(f"unknown calibration method {method!r} in the model card")
    scaled = float(calibration["a"]) * logit(probs) + float(calibration["b"])
    result = 1.0 / (1.0 + np.exp(-scaled))
    return float(result) if np.ndim(probs) == 0 else result
