"""Train a head on cached base features, optionally fine-tune end to end, then evaluate and export the artifact."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from model.architecture import assemble, build_base, build_head, compile_model
from model.artifact import make_card, save_artifact
from model.config import ModelConfig
from model.data import Example, Split, dataset_summary
from model.evaluation import Evaluation, choose_threshold, evaluate
from model.features import DEFAULT_CACHE, base_key, extract_features
from model.report import write_report


@dataclass
class Features:
    """Base features of some examples: x is (n, views + 1, *feature_shape), view 0 being the clean image."""

    x: np.ndarray
    y: np.ndarray
    examples: list[Example]

    def clean(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[:, 0], self.y.reshape(-1, 1)

    def all_views(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored view as its own training sample."""
        views = self.x.shape[1]
        return self.x.reshape(-1, *self.x.shape[2:]), np.repeat(self.y, views).reshape(-1, 1)

    def take(self, indices: Sequence[int]) -> "Features":
        indices = np.asarray(indices, dtype=int)
        return Features(self.x[indices], self.y[indices], [self.examples[i] for i in indices])

    def __add__(self, other: "Features") -> "Features":
        views = min(self.x.shape[1], other.x.shape[1])
        x = np.concatenate([self.x[:, :views], other.x[:, :views]])
        return Features(x, np.concatenate([self.y, other.y]), self.examples + other.examples)


def featurize(
    base, key: str, examples: Sequence[Example], views: int = 0, cache_dir: Path | None = DEFAULT_CACHE, seed: int = 0
) -> Features:
    """Run (or read from the cache) the frozen base on examples; unusable files are reported and dropped."""
    x, kept = extract_features(base, [e.path for e in examples], key, views, cache_dir, seed)
    kept_examples = [examples[i] for i in kept]
    return Features(x, np.array([e.label for e in kept_examples], dtype="float32"), kept_examples)


def prepare(
    split: Split, config: ModelConfig, views: int = 2, cache_dir: Path | None = DEFAULT_CACHE
) -> tuple[object, dict[str, Features]]:
    """The base for `config` and the features of each split (augmented views for training only)."""
    base = build_base(config.input_size, config.weights, config.seed)
    key = base_key(base)
    sets = {
        "train": featurize(base, key, split.train, views, cache_dir, config.seed),
        "validation": featurize(base, key, split.validation, 0, cache_dir, config.seed),
        "test": featurize(base, key, split.test, 0, cache_dir, config.seed),
    }
    return base, sets


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so each class counts equally in the loss."""
    counts = np.bincount(np.asarray(y, dtype=int).ravel(), minlength=2)
    return {c: float(len(y) / (2 * n)) if n else 1.0 for c, n in enumerate(counts)}


def fit_head(head, train: Features, validation: Features | None, config: ModelConfig, callbacks=(), verbose: int = 0):
    """Compile the head with the config's optimizer and fit it on every stored view of the training features."""
    import keras

    compile_model(head, config.optimizer, config.learning_rate)
    x, y = train.all_views()
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


def train_head(base, sets: dict[str, Features], config: ModelConfig, callbacks=(), verbose: int = 0):
    """A fresh head for `config`, fitted on the training features; returns (head, history dict)."""
    import keras

    keras.utils.set_random_seed(config.seed)
    head = build_head(tuple(base.output_shape[1:]), config)
    history = fit_head(head, sets["train"], sets.get("validation"), config, callbacks, verbose)
    return head, history.history


def fine_tune(model, train: Sequence[Example], validation: Sequence[Example], config: ModelConfig, epochs: int,
              learning_rate: float = 1e-5, verbose: int = 2) -> dict:
    """Unfreeze the base and train end to end at a low learning rate (slow on a CPU; meant for a GPU)."""
    from model.data import make_dataset

    model.get_layer("vgg16").trainable = True
    compile_model(model, "sgd_momentum", learning_rate)
    size = config.input_size
    history = model.fit(
        make_dataset(train, size, config.batch_size, augment_images=True, shuffle=True, seed=config.seed),
        validation_data=make_dataset(validation, size, config.batch_size) if validation else None,
        epochs=epochs,
        verbose=verbose,
    )
    model.get_layer("vgg16").trainable = False
    return history.history


class TrainingDiverged(RuntimeError):
    """The model's outputs are not finite numbers: the loss went to NaN during training."""


def probabilities(head, features: Features) -> np.ndarray:
    probs = np.asarray(head.predict(features.clean()[0], verbose=0, batch_size=64), dtype="float64").ravel()
    if not np.isfinite(probs).all():
        raise TrainingDiverged("training diverged (the loss became NaN): lower the learning rate or change the optimizer")
    return probs


def pick_threshold(y: np.ndarray, probs: np.ndarray, target_sensitivity: float | None) -> tuple[float, str]:
    """Threshold from validation data and the rule that chose it; 0.5 when validation has one class only."""
    try:
        threshold = choose_threshold(y, probs, target_sensitivity)
    except ValueError as error:
        return 0.5, f"0.5 (validation data could not choose one: {error})"
    rule = f"sensitivity >= {target_sensitivity} on validation" if target_sensitivity else "Youden's J on validation"
    return threshold, rule


def evaluate_features(name: str, head, features: Features, threshold: float) -> Evaluation:
    return evaluate(name, features.y, probabilities(head, features), threshold, [e.source for e in features.examples])


def finish(
    base,
    head,
    config: ModelConfig,
    sets: dict[str, Features],
    out_dir: Path,
    history: dict | None = None,
    target_sensitivity: float | None = None,
    meta: dict | None = None,
    notes: str = "",
) -> tuple[Path, list[Evaluation]]:
    """Threshold on validation, evaluate validation and test once, save the artifact and write the report."""
    val_probs = probabilities(head, sets["validation"])
    threshold, rule = pick_threshold(sets["validation"].y, val_probs, target_sensitivity)
    evaluations = [
        evaluate("validation", sets["validation"].y, val_probs, threshold, [e.source for e in sets["validation"].examples]),
        evaluate_features("test", head, sets["test"], threshold),
    ]
    training_data = {
        name: dataset_summary(features.examples) for name, features in sets.items() if features.examples
    }
    metrics = {e.name: e.metrics for e in evaluations}
    card = make_card(config, threshold, training_data, metrics, rule, notes)
    model = assemble(base, head, trainable_base=False)
    path = save_artifact(model, Path(out_dir), card)
    write_report(Path(out_dir), evaluations, history, {"threshold_rule": rule, **(meta or {}), **_flat(config)})
    return path, evaluations


def _flat(config: ModelConfig) -> dict:
    return {k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.to_dict().items()}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def eta(seconds: float) -> str:
    return "unknown" if not math.isfinite(seconds) else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
