"""Objectives that measure generalization, logged each epoch so Keras Tuner can track them like val_auc.

external_auc: AUC on a labelled folder from other hospitals, never trained on (with its 95% interval).
cv_auc: mean AUC over patient-grouped folds of the training data, logged at the last epoch (earlier
epochs log 0, so the trial's kept weights are the last epoch's, the epoch count the folds used).
collection_auc: cross-validated AUC of COVID-19 against other pneumonias within the one collection holding both,
computed after the search for the trials external AUC cannot tell apart (tuning/search.py: choose_trial).
"""

from __future__ import annotations

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from model.config import ModelConfig
from model.features import Features
from model.training.evaluation import bootstrap_auc_ci, collection_sources, cross_validated_summary
from model.training.folds import cross_validate

CV_FOLDS = 5
INTERVAL_RESAMPLES = 200


class ExternalAUC(keras.callbacks.Callback):
    """Adds external_auc and its 95% bootstrap interval (external_auc_low/high) to each epoch's logs."""

    def __init__(self, head: keras.Model, external: Features):
        super().__init__()
        self.head, self.external = head, external

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        probs = self.head.predict(self.external.clean()[0], verbose=0, batch_size=256).ravel()
        if not np.isfinite(probs).all():
            logs.update(external_auc=0.0, external_auc_low=0.0, external_auc_high=0.0)
            return
        ci, _ = bootstrap_auc_ci(self.external.y, probs, INTERVAL_RESAMPLES, seed=epoch)
        low, high = ci or (np.nan, np.nan)
        logs.update(external_auc=float(roc_auc_score(self.external.y, probs)), external_auc_low=low,
                    external_auc_high=high)


class CrossValidatedAUC(keras.callbacks.Callback):
    """Logs a precomputed cross-validated AUC as cv_auc at the last epoch (0 before it)."""

    def __init__(self, value: float, epochs: int):
        super().__init__()
        self.value, self.epochs = value, epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["cv_auc"] = self.value if epoch + 1 >= self.epochs else 0.0


def cv_auc(train: Features, config: ModelConfig, folds: int = CV_FOLDS) -> float:
    """Mean held-out AUC over patient-grouped folds of the training features (undefined folds left out)."""
    aucs = [e.metrics["auc"] for e in cross_validate(train, config, folds, config.seed)]
    defined = [a for a in aucs if a is not None]
    return float(np.mean(defined)) if defined else 0.0


def collection_auc(features: Features, config: ModelConfig, folds: int = CV_FOLDS) -> dict | None:
    """Pooled out-of-fold metrics (auc, auc_ci95, n, ...) over the films of sources holding both classes, from
    patient-grouped folds of `features`; None without such a source (then nothing is trained)."""
    if not collection_sources(features.y, [e.source for e in features.examples]):
        return None
    return cross_validated_summary(cross_validate(features, config, folds, config.seed))["pooled"]["within_collection"]
