"""From a split to a saved model: featurize the split's parts, then threshold, evaluate once, save and report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from model.architecture import BASE_NAME, assemble, build_config_base, head_of
from model.artifact import save_artifact
from model.calibration import calibrate
from model.card import ModelCard, new_card
from model.config import ModelConfig
from model.data import Example, Split, dataset_summary
from model.features import (
    DEFAULT_CACHE,
    Features,
    SplitFeatures,
    feature_network,
    featurize,
    featurizer,
)
from model.preprocessing import preprocessing_of
from model.training.calibration import choose_calibration
from model.training.evaluation import (
    Evaluation,
    evaluate,
    operating_points,
    pick_threshold,
)
from model.training.head import probabilities
from model.training.report import write_report
from model.training.shortcut import shortcut_audit


def prepare(split: Split, config: ModelConfig, views: int = 2, cache_dir: Path | None = DEFAULT_CACHE,
            precision: str = "float32") -> tuple[object, SplitFeatures]:
    """The base a model of `config` runs, and the features of each part of the split (views for training only).

    Features come from the cache of every pooled block (or block 5's map) under the config's preprocessing,
    sliced to the blocks and pooling the config reads, computed in `precision`; the base returned is float32.
    """
    features = featurizer(config, cache_dir, precision)
    sets = SplitFeatures(features(split.train, views), features(split.validation), features(split.test))
    return build_config_base(config), sets


def evaluate_features(name: str, features: Features, probs: np.ndarray, threshold: float) -> Evaluation:
    """Metrics of these probabilities of the features' examples at the threshold, with the shortcut audit."""
    evaluation = evaluate(name, features.y, probs, threshold, [e.source for e in features.examples])
    evaluation.metrics["shortcut_audit"] = shortcut_audit(features.examples, probs)
    return evaluation


def score_saved(model, card: ModelCard, examples: Sequence[Example], cache_dir: Path | None = DEFAULT_CACHE,
                precision: str = "float32") -> tuple[Features, np.ndarray]:
    """A saved model's features (through its own base and preprocessing, in `precision`, cached) and
    calibrated probabilities."""
    preprocessing = preprocessing_of(card.config)
    network, key = feature_network(model.get_layer(BASE_NAME), precision, preprocessing)
    scored = featurize(network, key, examples, 0, cache_dir, 0, preprocessing)
    return scored, calibrate(probabilities(head_of(model), scored), card.calibration)


def finish(
    base,
    head,
    config: ModelConfig,
    sets: SplitFeatures,
    out_dir: Path,
    history: dict | None = None,
    meta: dict | None = None,
    notes: str = "",
    external: Features | None = None,
) -> tuple[Path, list[Evaluation]]:
    """Calibrate and threshold on validation; evaluate validation, test (and the external folder) once; save, report.

    The card also gets the operating points of OPERATING_RULES on validation and external.
    """
    scored = {"validation": sets.validation, "test": sets.test, **({"external": external} if external else {})}
    raw = {name: probabilities(head, features) for name, features in scored.items()}
    calibration = choose_calibration(sets.validation.y, raw["validation"])
    probs = {name: calibrate(p, calibration) for name, p in raw.items()}
    threshold, rule = pick_threshold(sets.validation.y, probs["validation"], config.target_sensitivity)
    evaluations = [evaluate_features(name, features, probs[name], threshold) for name, features in scored.items()]
    metrics = {e.name: e.metrics for e in evaluations}
    others = {e.name: (e.y_true, e.probs) for e in evaluations if e.name == "external"}
    metrics["operating_points"] = operating_points((sets.validation.y, probs["validation"]), others)
    training_data = {name: dataset_summary(part.examples) for name, part in sets.parts().items() if part.examples}
    card = dataclasses.replace(new_card(config, threshold, rule, training_data, metrics, notes), calibration=calibration)
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
