"""A second implementation of the stratified bootstrap of the AUC, for tests: numpy draws and the rank-sum formula."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc_resamples(positives: np.ndarray, negatives: np.ndarray, resamples: int = 20000, seed: int = 1) -> np.ndarray:
    """The AUC of each resample drawing positives and negatives apart, with replacement (Mann-Whitney U from the
    positives' rank sum, ties at mid-rank, over n+ x n-)."""
    rng = np.random.default_rng(seed)
    pos = positives[rng.integers(0, len(positives), (resamples, len(positives)))]
    neg = negatives[rng.integers(0, len(negatives), (resamples, len(negatives)))]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)[:, : len(positives)]
    return (ranks.sum(axis=1) - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives))


def tails(resampled: np.ndarray, interval) -> tuple[float, float]:
    """The shares of resampled AUCs below the interval's low end and above its high end: 2.5% each for a 95%
    percentile interval."""
    low, high = interval
    return float(np.mean(resampled < low)), float(np.mean(resampled > high))
