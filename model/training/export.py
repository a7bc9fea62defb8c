"""From a split to a saved model: featurize the split's parts, then threshold, evaluate once, save and report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from model.architecture import BASE_NAME, assemble, build_base, head_of
from model.artifact import save_artifact
from model.calibration import calibrate
from model.card import ModelCard, new_card
from model.config import ModelConfig
from model.data import Example, Split, dataset_summary
from model.features import DEFAULT_CACHE, Features, SplitFeatures, base_key, featurize
from model.training.calibration import choose_calibration
from model.training.evaluation import Evaluation, evaluate, pick_threshold
from model.training.head import probabilities
from model.training.report import write_report


def prepare(split: Split, config: ModelConfig, views: int = 2,
            cache_dir: Path | None = DEFAULT_CACHE) -> tuple[object, SplitFeatures]:
    """The base for `config` and the features of each part of the split (augmented views for training only)."""
    base = build_base(config.input_size, config.weights, config.seed)
    key = base_key(base)
    sets = SplitFeatures(
        train=featurize(base, key, split.train, views, cache_dir, config.seed),
        validation=featurize(base, key, split.validation, 0, cache_dir, config.seed),
        test=featurize(base, key, split.test, 0, cache_dir, config.seed),
    )
    return base, sets


def evaluate_features(name: str, head, features: Features, threshold: float,
                      calibration: dict | None = None) -> Evaluation:
    """Evaluate the head's (calibrated) probabilities on features at `threshold`."""
    probs = calibrate(probabilities(head, features), calibration)
    return evaluate(name, features.y, probs, threshold, [e.source for e in features.examples])


def score_saved(model, card: ModelCard, examples: Sequence[Example], cache_dir: Path | None = DEFAULT_CACHE,
                ) -> tuple[Features, np.ndarray]:
    """A saved model's features (through its own base, cached) and calibrated probabilities on examples."""
    base = model.get_layer(BASE_NAME)
    scored = featurize(base, base_key(base), examples, 0, cache_dir)
    return scored, calibrate(probabilities(head_of(model), scored), card.calibration)


def finish(
    base,
    head,
    config: ModelConfig,
    sets: SplitFeatures,
    out_dir: Path,
    history: dict | None = None,
    target_sensitivity: float | None = None,
    meta: dict | None = None,
    notes: str = "",
) -> tuple[Path, list[Evaluation]]:
    """Calibrate and threshold on validation, evaluate validation and test once, save the artifact and report."""
    raw = probabilities(head, sets.validation)
    calibration = choose_calibration(sets.validation.y, raw)
    val_probs = calibrate(raw, calibration)
    threshold, rule = pick_threshold(sets.validation.y, val_probs, target_sensitivity)
    evaluations = [
        evaluate("validation", sets.validation.y, val_probs, threshold, [e.source for e in sets.validation.examples]),
        evaluate_features("test", head, sets.test, threshold, calibration),
    ]
    training_data = {name: dataset_summary(part.examples) for name, part in sets.parts().items() if part.examples}
    card = new_card(config, threshold, rule, training_data, {e.name: e.metrics for e in evaluations}, notes)
    card = dataclasses.replace(card, calibration=calibration)
    path = save_artifact(assemble(base, head, trainable_base=False), Path(out_dir), card)
    meta = {"threshold_rule": rule, "calibration": _calibration_line(calibration), **(meta or {}), **_flat(config)}
    write_report(Path(out_dir), evaluations, history, meta)
    return path, evaluations


def _calibration_line(calibration: dict) -> str:
    """One line saying whether the probabilities were calibrated, and the validation Brier score before and after."""
    if calibration.get("method") == "platt":
        return (f"Platt scaling on validation patients (a={calibration['a']:.3f}, b={calibration['b']:.3f}): "
                f"validation Brier {calibration['brier_before']:.4f} -> {calibration['brier_after']:.4f}, "
                f"ECE {calibration['ece_before']:.3f} -> {calibration['ece_after']:.3f}")
    return f"none ({calibration.get('reason', 'not needed')})"


def _flat(config: ModelConfig) -> dict:
    return {k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in config.to_dict().items()}
