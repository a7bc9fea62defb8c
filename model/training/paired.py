"""Two saved models on the same images: each one's AUC, the paired differences with bootstrap intervals, a verdict.

The differences are the AUC's and, at each model's own card threshold, the sensitivity's and specificity's; the
verdict is worse when any of them lies below 0 beyond noise (its 95% interval below 0), better when the AUC's lies
above 0 and none is worse. The bootstrap resamples patients (MANIFEST.csv `patient_id`; an image without one is
its own patient), positives and negatives separately, and scores both models on each resample, so the differences
keep their pairing and images of one patient move together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score

from model.artifact import load_artifact
from model.card import ModelCard
from model.data import Example
from model.features import DEFAULT_CACHE
from model.training.evaluation import evaluate
from model.training.scoring import score_saved

BETTER, SAME, WORSE = "better", "not distinguishable", "worse"
METHOD = "paired percentile bootstrap over patients (positives and negatives resampled separately)"


@dataclass(frozen=True)
class ModelScore:
    """One model on the compared images, at its own card's threshold."""

    path: str
    version: str
    threshold: float
    auc: float | None
    auc_ci95: list[float] | None
    sensitivity: float | None
    sensitivity_ci95: list[float] | None
    specificity: float | None
    specificity_ci95: list[float] | None


@dataclass(frozen=True)
class Comparison:
    """Candidate against current on the same images; `difference` is candidate AUC minus current AUC."""

    data: str
    n: int
    n_patients: int
    candidate: ModelScore
    current: ModelScore
    difference: float | None
    difference_ci95: list[float] | None
    verdict: str
    resamples: int
    method: str = METHOD
    sensitivity_difference: float | None = None
    sensitivity_difference_ci95: list[float] | None = None
    specificity_difference: float | None = None
    specificity_difference_ci95: list[float] | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def _clusters(y: np.ndarray, patients: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Image indices per (patient, label): the positive clusters and the negative clusters."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (patient, label) in enumerate(zip(patients, y)):
        groups.setdefault((patient, int(label)), []).append(i)
    positives = [np.array(v) for (_, label), v in groups.items() if label == 1]
    negatives = [np.array(v) for (_, label), v in groups.items() if label == 0]
    return positives, negatives


def paired_bootstrap(y: np.ndarray, p_candidate: np.ndarray, p_current: np.ndarray, patients: Sequence[str],
                     thresholds: tuple[float, float] = (0.5, 0.5), n_boot: int = 1000,
                     seed: int = 0) -> np.ndarray | None:
    """95% intervals (columns: low, high) of the candidate's AUC, the current's AUC, and the candidate - current
    differences of AUC, sensitivity and specificity (each model at its own threshold), or None.

    None when a class has fewer than two patients, too few to resample.
    """
    positives, negatives = _clusters(np.asarray(y), patients)
    if min(len(positives), len(negatives)) < 2 or n_boot < 1:
        return None

    def statistic(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """Both AUCs and the three differences on the images of the resampled patient clusters."""
        pos_index = np.concatenate([positives[i] for i in pos])
        neg_index = np.concatenate([negatives[i] for i in neg])
        index, labels = np.r_[pos_index, neg_index], np.r_[np.ones(len(pos_index)), np.zeros(len(neg_index))]
        a, b = roc_auc_score(labels, p_candidate[index]), roc_auc_score(labels, p_current[index])
        sensitivity, specificity = _rate_differences(p_candidate, p_current, thresholds, pos_index, neg_index)
        return np.array([a, b, a - b, sensitivity, specificity])

    result = bootstrap((np.arange(len(positives)), np.arange(len(negatives))), statistic, n_resamples=n_boot,
                       vectorized=False, method="percentile", rng=np.random.default_rng(seed))
    return np.column_stack([result.confidence_interval.low, result.confidence_interval.high])


def _rate_differences(p_candidate: np.ndarray, p_current: np.ndarray, thresholds: tuple[float, float],
                      positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """Candidate - current sensitivity (on the positives) and specificity (on the negatives), each at its threshold."""
    (a, b), (ta, tb) = (p_candidate, p_current), thresholds
    sensitivity = np.mean(a[positives] >= ta) - np.mean(b[positives] >= tb)
    specificity = np.mean(a[negatives] < ta) - np.mean(b[negatives] < tb)
    return float(sensitivity), float(specificity)


def verdict(intervals: dict[str, Sequence[float] | None]) -> tuple[str, str]:
    """(verdict, why) from the differences' intervals by name (AUC, sensitivity, specificity): worse when any lies
    below 0, better when the AUC's lies above 0, else not distinguishable."""
    below = [name for name, ci in intervals.items() if ci is not None and ci[1] < 0]
    if below:
        return WORSE, f"{' and '.join(below)} lower beyond noise (95% interval of the difference below 0)"
    auc = intervals.get("AUC")
    if auc is not None and auc[0] > 0:
        return BETTER, "AUC higher beyond noise and nothing lower"
    if all(ci is None for ci in intervals.values()):
        return SAME, "too few patients of a class to resample"
    return SAME, "every difference's 95% interval reaches 0 or above"


def _score(path: Path, version: str, threshold: float, y: np.ndarray, probs: np.ndarray,
           auc_ci: list | None) -> ModelScore:
    """The model's AUC (with the paired bootstrap's interval) and sensitivity/specificity at its threshold."""
    m = evaluate(str(path), y, probs, threshold, n_boot=0).metrics
    return ModelScore(str(path), version, threshold, m["auc"], auc_ci, m["sensitivity"], m["sensitivity_ci95"],
                      m["specificity"], m["specificity_ci95"])


def _scored(path: Path, examples: Sequence[Example], cache_dir: Path | None,
            ) -> tuple[ModelCard, dict[Path, float], list[Path]]:
    """(card, probability by image path, unusable paths) of the saved model at `path`."""
    model, card = load_artifact(path)
    scored, probs = score_saved(model, card, examples, cache_dir)
    return card, {e.path: float(p) for e, p in zip(scored.examples, probs)}, scored.skipped


def compare_models(candidate: Path, current: Path, examples: Sequence[Example], data: str = "",
                   cache_dir: Path | None = DEFAULT_CACHE, n_boot: int = 1000,
                   seed: int = 0) -> tuple[Comparison, list[Path]]:
    """Score both saved models on the images both could read; the comparison and the unusable paths."""
    card_a, probs_a, skipped_a = _scored(Path(candidate), examples, cache_dir)
    card_b, probs_b, skipped_b = _scored(Path(current), examples, cache_dir)
    kept = [e for e in examples if e.path in probs_a and e.path in probs_b]
    if not kept:
        raise ValueError(f"{data or 'the data'}: no image could be scored by both models")
    y = np.array([e.label for e in kept])
    p_a, p_b = np.array([probs_a[e.path] for e in kept]), np.array([probs_b[e.path] for e in kept])
    thresholds = (card_a.threshold, card_b.threshold)
    intervals = paired_bootstrap(y, p_a, p_b, [e.patient_id for e in kept], thresholds, n_boot, seed)
    ci = [None] * 5 if intervals is None else [[float(v) for v in row] for row in intervals]
    a = _score(Path(candidate), card_a.version, card_a.threshold, y, p_a, ci[0])
    b = _score(Path(current), card_b.version, card_b.threshold, y, p_b, ci[1])
    difference = None if a.auc is None or b.auc is None else a.auc - b.auc
    sensitivity, specificity = _rate_differences(p_a, p_b, thresholds, np.flatnonzero(y == 1), np.flatnonzero(y == 0))
    said, why = verdict({"AUC": ci[2], "sensitivity": ci[3], "specificity": ci[4]})
    comparison = Comparison(data, len(kept), len({e.patient_id for e in kept}), a, b, difference, ci[2],
                            said, n_boot if intervals is not None else 0, METHOD,
                            sensitivity if (y == 1).any() else None, ci[3],
                            specificity if (y == 0).any() else None, ci[4], why)
    return comparison, sorted(set(skipped_a) | set(skipped_b))
