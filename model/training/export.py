"""From a trained head to a saved model: calibrate and threshold on validation, evaluate once, save and report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from model.architecture import assemble
from model.artifact import save_artifact
from model.calibration import calibrate
from model.card import new_card
from model.config import UNSEEN_SOURCES, ModelConfig
from model.data import dataset_summary
from model.features import Features, SplitFeatures
from model.training.evaluation import (
    Evaluation,
    evaluate,
    operating_points,
    pick_threshold,
)
from model.training.head import probabilities
from model.training.platt import choose_calibration
from model.training.report import write_report
from model.training.shortcut import shortcut_audit
from model.training.transfer import expected_at_new_hospital, threshold_at, transfer_point


def evaluate_features(name: str, features: Features, probs: np.ndarray, threshold: float) -> Evaluation:
    """Metrics of these probabilities of the features' examples at the threshold, with the shortcut audit."""
    evaluation = evaluate(name, features.y, probs, threshold, [e.source for e in features.examples])
    evaluation.metrics["shortcut_audit"] = shortcut_audit(features.examples, probs)
    return evaluation


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
    reference: Features | None = None,
) -> tuple[Path, list[Evaluation]]:
    """Calibrate on validation; threshold by the config's operating point; evaluate validation, test (and the
    external folder) once; save, report.

    Under operating_point unseen_sources the threshold is the one that transfers (model/training/transfer.py:
    cross-validation over the training and validation parts, grouped by source, at a specificity among the
    `reference` normals); else it is chosen on validation. The card also gets the operating points of
    OPERATING_RULES on validation and external.
    """
    scored = {"validation": sets.validation, "test": sets.test, **({"external": external} if external else {})}
    raw = {name: probabilities(head, features) for name, features in scored.items()}
    calibration = choose_calibration(sets.validation.y, raw["validation"])
    probs = {name: calibrate(p, calibration) for name, p in raw.items()}
    if config.operating_point == UNSEEN_SOURCES:
        if reference is None:
            raise ValueError("operating_point unseen_sources needs reference normals (--reference-normals DIR)")
        point = transfer_point(sets.train.first_view() + sets.validation, config, reference,
                               target_sensitivity=config.target_sensitivity)
        threshold = threshold_at(calibrate(probabilities(head, reference), calibration), point.specificity)
        rule, transfer = point.describe(), point.to_dict()
    else:
        threshold, rule = pick_threshold(sets.validation.y, probs["validation"], config.target_sensitivity)
        transfer = {}
    evaluations = [evaluate_features(name, features, probs[name], threshold) for name, features in scored.items()]
    metrics = {e.name: e.metrics for e in evaluations}
    others = {e.name: (e.y_true, e.probs) for e in evaluations if e.name == "external"}
    metrics["operating_points"] = operating_points((sets.validation.y, probs["validation"]), others)
    training_data = {name: dataset_summary(part.examples) for name, part in sets.parts().items() if part.examples}
    card = dataclasses.replace(new_card(config, threshold, rule, training_data, metrics, notes), calibration=calibration,
                               precision=sets.validation.precision, transfer=transfer)
    path = save_artifact(assemble(base, head, trainable_base=False), Path(out_dir), card)
    meta = {"threshold_rule": rule, "calibration": _calibration_line(calibration), "precision": card.precision,
            **({"expected at a new hospital": expected_at_new_hospital(transfer)} if transfer else {}),
            **(meta or {}), **_flat(config)}
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
