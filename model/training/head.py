"""Fit a classification head on cached base features, and score features with it."""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from model.architecture import build_head, compile_model
from model.config import ModelConfig
from model.features import Features


class TrainingDiverged(RuntimeError):
    """The model's outputs are not finite numbers: the loss went to NaN during training."""


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency ('balanced') weights so each class counts equally in the loss."""
    y = np.asarray(y, dtype=int).ravel()
    present = np.unique(y)
    weights = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y).tolist()))
    return {c: float(weights.get(c, 1.0)) for c in (0, 1)}


def fit_head(head, train: Features, validation: Features | None, config: ModelConfig, callbacks=(), verbose: int = 0):
    """Compile the head with the config's optimizer and fit it on every stored view of the training features."""
    import keras

    compile_model(head, config.optimizer, config.learning_rate)
    x, y = train.all_views()
    if any(layer.name == "normalize" for layer in head.layers):
        head.get_layer("normalize").adapt(x)
    return head.fit(
        x,
        y,
        validation_data=validation.clean() if validation is not None and len(validation.y) else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weights(y) if config.class_weight else None,
        shuffle=True,
        callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=verbose,
    )


def train_head(feature_shape: tuple[int, ...], train: Features, validation: Features | None, config: ModelConfig,
               callbacks=(), verbose: int = 0):
    """A fresh head for `config`, fitted on the training features; returns (head, history dict)."""
    import keras

    keras.utils.set_random_seed(config.seed)
    head = build_head(tuple(feature_shape), config)
    history = fit_head(head, train, validation, config, callbacks, verbose)
    return head, history.history


def probabilities(head, features: Features) -> np.ndarray:
    """The head's probability for each example's clean view; TrainingDiverged if any is not finite."""
    probs = np.asarray(head.predict(features.clean()[0], verbose=0, batch_size=64), dtype="float64").ravel()
    if not np.isfinite(probs).all():
        raise TrainingDiverged("training diverged (the loss became NaN): lower the learning rate or change the optimizer")
    return probs
