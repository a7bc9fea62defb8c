"""The HyperModel: builds a head from one point of the search space and fits it on the bank's cached features."""

from __future__ import annotations

import dataclasses

import keras
import keras_tuner

from model.architecture import build_head
from model.config import ModelConfig
from model.training.head import fit_head
from tuning.objectives import CrossValidatedAUC, ExternalAUC, cv_auc
from tuning.space import SPACE, Spec, config_of, declare


class HeadHyperModel(keras_tuner.HyperModel):
    """Builds a head from hp and fits it on the cached features of hp's preprocessing and blocks.

    `bank` gives each configuration its features (tuning.bank.FeatureBank); fit() tunes epochs,
    batch size and class weighting, and logs the external and cross-validated AUC objectives when asked.
    Under Hyperband the tuner sets the epochs, so the space given here should not hold them.
    """

    def __init__(self, bank, base: ModelConfig, space: dict[str, Spec] = SPACE, objective: str = "val_auc"):
        super().__init__(name="vgg16_head")
        self.bank = bank
        self.base = base
        self.space = space
        self.objective = objective

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        declare(hp, self.space)

    def config(self, hp: keras_tuner.HyperParameters) -> ModelConfig:
        return config_of(declare(hp, self.space), self.base)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        config = self.config(hp)
        keras.utils.set_random_seed(config.seed)
        return build_head(self.bank.feature_shape(config), config)

    def fit(self, hp, model, *args, epochs: int | None = None, initial_epoch: int = 0, callbacks=(), **kwargs):
        """Train on every stored view, validate on the clean validation images; Keras output stays quiet."""
        config = self.config(hp)
        if epochs is not None:
            config = dataclasses.replace(config, epochs=epochs - initial_epoch)
        sets = self.bank.sets(config)
        extra = [ExternalAUC(model, self.bank.external(config))] if self.bank.has_external else []
        if self.objective == "cv_auc":
            extra.append(CrossValidatedAUC(cv_auc(sets.train, config), config.epochs))
        return fit_head(model, sets.train, sets.validation, config, [*extra, *callbacks])
