"""Patient-grouped k-fold cross-validation of one head configuration on cached features."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from model.config import ModelConfig
from model.features import Features
from model.progress import Progress
from model.training.evaluation import Evaluation, evaluate, pick_threshold
from model.training.head import probabilities, train_head


def grouped_folds(features: Features, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, held-out indices) per fold, stratified by label and grouped by patient."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    groups = [e.patient_id for e in features.examples]
    return list(splitter.split(np.zeros(len(features.y)), features.y, groups))


def run_fold(name: str, features: Features, train_idx, test_idx, config: ModelConfig, seed: int,
             extra: Features | None = None) -> Evaluation:
    """Train on train_idx (minus an inner validation part for the threshold, plus `extra`) and evaluate test_idx."""
    rest = features.take(train_idx)
    inner_train, inner_val = grouped_folds(rest, 5, seed)[0]
    train, validation = rest.take(inner_train), rest.take(inner_val)
    train = train + extra if extra is not None else train
    head, _ = train_head(features.x.shape[2:], train, validation, config)
    threshold, _ = pick_threshold(validation.y, probabilities(head, validation), None)
    held_out = features.take(test_idx)
    return evaluate(name, held_out.y, probabilities(head, held_out), threshold, [e.source for e in held_out.examples])


def cross_validate(features: Features, config: ModelConfig, folds: int, seed: int,
                   extra: Features | None = None) -> list[Evaluation]:
    """One evaluation per held-out fold, each scored by a head that never saw its patients (`extra`: more
    training examples for every fold, never held out); progress is logged."""
    progress = Progress("cross-validation", folds, unit="folds", every_s=0)
    evaluations = []
    for k, (train_idx, test_idx) in enumerate(grouped_folds(features, folds, seed), start=1):
        evaluations.append(run_fold(f"fold{k}", features, train_idx, test_idx, config, seed + k, extra))
        progress.advance()
    return evaluations
