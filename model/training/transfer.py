"""An operating point that transfers to hospitals the model never saw.

A validation threshold is set on positives from the same hospitals and publications the model trained on, and
those are the obvious films: at a new hospital it finds fewer. Here the positives are held out by source
(cross-validation grouped by hospital or publication, so each fold's model never saw its positives' sources) and
each held-out film is ranked against reference normals that no model trained on (the fraction of them it
outscores). The operating point is the specificity among those normals at which the target share of unseen-source
positives is still found; the final model's threshold is its own score at that specificity on the same normals.
Ranks do not depend on calibration, so fold models and the final model are compared on one scale.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from model.config import ModelConfig
from model.features import Features
from model.progress import Progress
from model.training.evaluation import wilson_interval
from model.training.head import probabilities, train_head

FOLDS = 5
NORMAL_CLASS = "normal"


@dataclass(frozen=True)
class TransferPoint:
    """The operating point and what it is expected to find at a hospital the model never saw.

    `specificity` is the share of reference normals below the threshold; `sensitivity` the share of positives
    from held-out sources at or above it (pooled over the folds, with its Wilson interval); `other_specificity`
    the same share for held-out non-normal negatives (other pneumonias), which the normals do not represent.
    """

    target_sensitivity: float
    specificity: float
    sensitivity: float
    sensitivity_ci95: list[float] | None
    other_specificity: float | None
    n_positive: int
    n_other: int
    n_sources: int
    n_reference: int
    folds: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """How the point was estimated, in one sentence for the card and the report."""
        return (f"sensitivity >= {self.target_sensitivity:g} on COVID-19 films from hospitals and publications never "
                f"trained on ({self.folds}-fold cross-validation grouped by source: {self.n_positive} films from "
                f"{self.n_sources} sources), at specificity {self.specificity:.2f} among {self.n_reference} reference "
                "normals no model trained on")


def source_groups(features: Features, folds: int = FOLDS) -> list[str]:
    """The cross-validation group of each example: its hospital or publication where known, else its patient.

    A source holding more than a fold's share of the examples (one archive's normals) cannot be held out whole,
    so its examples are grouped by patient."""
    counts = Counter(e.origin for e in features.examples)
    whole = {origin for origin, n in counts.items() if origin and n <= len(features.examples) / folds}
    return [f"source:{e.origin}" if e.origin in whole else f"patient:{e.patient_id}" for e in features.examples]


def reference_rank(reference: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """For each probability, the share of reference probabilities strictly below it."""
    return np.searchsorted(np.sort(reference), probs, side="left") / len(reference)


def threshold_at(reference: np.ndarray, specificity: float) -> float:
    """The lowest threshold (positive is >= threshold) that a probability clears exactly when its reference_rank
    reaches `specificity`: just above the highest reference probability that must stay below it."""
    ranked = np.sort(reference)
    k = round(specificity * len(ranked))
    return 0.0 if k == 0 else float(np.nextafter(ranked[min(k, len(ranked)) - 1], np.inf))


def _held_out_ranks(features: Features, groups: list[str], config: ModelConfig, folds: int,
                    reference: Features) -> np.ndarray:
    """Each example's rank among the reference normals, scored by a head that never saw its source."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    ranks = np.zeros(len(features.y))
    progress = Progress("source-held-out folds", folds, unit="folds", every_s=0)
    for train_idx, test_idx in splitter.split(np.zeros(len(features.y)), features.y, groups):
        head, _ = train_head(features.x.shape[2:], features.take(train_idx), None, config)
        ranks[test_idx] = reference_rank(probabilities(head, reference), probabilities(head, features.take(test_idx)))
        progress.advance()
    return ranks


def transfer_point(features: Features, config: ModelConfig, reference: Features, target_sensitivity: float = 0.9,
                   folds: int = FOLDS) -> TransferPoint:
    """The highest specificity among the reference normals at which `target_sensitivity` of the positives from
    held-out sources is found (see the module docstring)."""
    if not reference.examples or any(e.label for e in reference.examples):
        raise ValueError("the reference for the operating point must be negative (normal) films only")
    groups = source_groups(features, folds)
    ranks = _held_out_ranks(features, groups, config, folds, reference)
    positive = features.y == 1
    n_positive = int(positive.sum())
    other = np.array([e.label == 0 and e.class_name != NORMAL_CLASS for e in features.examples])
    needed = math.ceil(target_sensitivity * n_positive - 1e-9)
    specificity = float(np.sort(ranks[positive])[::-1][needed - 1])
    found = int((ranks[positive] >= specificity).sum())
    return TransferPoint(
        target_sensitivity=target_sensitivity,
        specificity=specificity,
        sensitivity=found / n_positive,
        sensitivity_ci95=wilson_interval(found, n_positive),
        other_specificity=float((ranks[other] < specificity).mean()) if other.any() else None,
        n_positive=n_positive,
        n_other=int(other.sum()),
        n_sources=len({g for g, p in zip(groups, positive) if p and g.startswith("source:")}),
        n_reference=len(reference.examples),
        folds=folds,
    )


def expected_at_new_hospital(transfer: dict) -> str:
    """A card's `transfer` in words: sensitivity with its interval, specificity among normals and other pneumonias."""
    ci = transfer.get("sensitivity_ci95") or [None, None]
    interval = f" ({ci[0]:.2f}-{ci[1]:.2f})" if None not in ci else ""
    other = transfer.get("other_specificity")
    return (f"sensitivity {transfer['sensitivity']:.2f}{interval}, specificity {transfer['specificity']:.2f} among "
            "normal films" + (f" and {other:.2f} among other pneumonias" if other is not None else ""))
