"""Two saved models on the same images: each one's AUC, the paired AUC difference with a bootstrap interval, a verdict.

The bootstrap resamples patients (MANIFEST.csv `patient_id`; an image without one is its own patient),
positives and negatives separately, and scores both models on each resample, so the difference keeps its
pairing and images of one patient move together.
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
from model.training.export import score_saved

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


def paired_auc_bootstrap(y: np.ndarray, p_candidate: np.ndarray, p_current: np.ndarray, patients: Sequence[str],
                         n_boot: int = 1000, seed: int = 0) -> np.ndarray | None:
    """95% intervals (rows: candidate AUC, current AUC, difference; columns: low, high), or None.

    None when a class has fewer than two patients, too few to resample.
    """
    positives, negatives = _clusters(np.asarray(y), patients)
    if min(len(positives), len(negatives)) < 2 or n_boot < 1:
        return None

    def statistic(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        """Both AUCs and their difference on the images of the resampled patient clusters."""
        pos_index = np.concatenate([positives[i] for i in pos])
        neg_index = np.concatenate([negatives[i] for i in neg])
        index, labels = np.r_[pos_index, neg_index], np.r_[np.ones(len(pos_index)), np.zeros(len(neg_index))]
        a, b = roc_auc_score(labels, p_candidate[index]), roc_auc_score(labels, p_current[index])
        return np.array([a, b, a - b])

    result = bootstrap((np.arange(len(positives)), np.arange(len(negatives))), statistic, n_resamples=n_boot,
                       vectorized=False, method="percentile", rng=np.random.default_rng(seed))
    return np.column_stack([result.confidence_interval.low, result.confidence_interval.high])


def verdict(interval: Sequence[float] | None) -> str:
    """better when the difference's interval lies above 0, worse when below, else not distinguishable."""
    if interval is None:
        return SAME
    return BETTER if interval[0] > 0 else WORSE if interval[1] < 0 else SAME


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
    intervals = paired_auc_bootstrap(y, p_a, p_b, [e.patient_id for e in kept], n_boot, seed)
    ci = [None] * 3 if intervals is None else [[float(v) for v in row] for row in intervals]
    a = _score(Path(candidate), card_a.version, card_a.threshold, y, p_a, ci[0])
    b = _score(Path(current), card_b.version, card_b.threshold, y, p_b, ci[1])
    difference = None if a.auc is None or b.auc is None else a.auc - b.auc
    comparison = Comparison(data, len(kept), len({e.patient_id for e in kept}), a, b, difference, ci[2],
                            verdict(ci[2]), n_boot if intervals is not None else 0)
    return comparison, sorted(set(skipped_a) | set(skipped_b))
