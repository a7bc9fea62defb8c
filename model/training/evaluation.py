"""Honest metrics for a binary classifier: threshold choice, point estimates, confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from model.training.platt import expected_calibration_error

PROB_EPSILON = 1e-7  # same clipping as Keras' binary cross-entropy


@dataclass
class Evaluation:
    """One set of predictions on labelled images and the metrics computed from them."""

    name: str
    y_true: np.ndarray
    probs: np.ndarray
    threshold: float
    metrics: dict
    sources: list[str] | None = None


def _check_inputs(y_true, probs, sources=None) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Validate labels (0/1), probabilities in [0, 1] and optional sources; return them as arrays."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=float)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and probs must be 1-D, got shapes {y.shape} and {p.shape}")
    if len(y) == 0:
        raise ValueError("cannot evaluate zero images")
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} labels but probs has {len(p)} values")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must contain only 0 and 1, got values {np.unique(y)[:10].tolist()}")
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise ValueError("probs must be finite probabilities in [0, 1]")
    if sources is not None:
        sources = [str(s) for s in sources]
        if len(sources) != len(y):
            raise ValueError(f"sources has {len(sources)} entries but there are {len(y)} labels")
    return y.astype(int), p, sources


def choose_threshold(y_true, probs, target_sensitivity: float | None = None) -> float:
    """Pick an operating threshold from validation predictions (predict positive when prob >= threshold).

    With `target_sensitivity`, return the highest threshold whose sensitivity on this data reaches it;
    otherwise the threshold maximising Youden's J (sensitivity + specificity - 1; ties go to the highest).
    The result is clipped to [0, 1]. Raises ValueError when y_true holds only one class, since no ROC
    curve exists then; callers should fall back to 0.5 and say so.
    """
    y, p, _ = _check_inputs(y_true, probs)
    if len(np.unique(y)) < 2:
        raise ValueError("choose_threshold needs both classes in y_true; fall back to 0.5")
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    if target_sensitivity is None:
        index = int(np.argmax(tpr - fpr))
    else:
        if not 0 < target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        index = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    return float(np.clip(thresholds[index], 0.0, 1.0))


def _none_if_nan(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def wilson_interval(successes: int, total: int) -> list[float] | None:
    """95% Wilson score interval for a proportion; None when total is 0."""
    if total == 0:
        return None
    ci = binomtest(successes, total).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def _auc_statistic(positives: np.ndarray, negatives: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mann-Whitney AUC (ties count half) of each resample along `axis`, as scipy.stats.bootstrap calls it."""
    pos = np.moveaxis(positives, axis, -1)[..., :, None]
    neg = np.moveaxis(negatives, axis, -1)[..., None, :]
    return ((pos > neg).mean(axis=(-2, -1)) + 0.5 * (pos == neg).mean(axis=(-2, -1)))


def bootstrap_auc_ci(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[list[float] | None, int]:
    """Percentile bootstrap 95% CI of ROC AUC, resampling positives and negatives separately (stratified).

    Every resample keeps both classes, so all n_boot are used. Returns (interval or None, resamples used);
    None when a class has fewer than two images, too few to resample.
    """
    y = np.asarray(y)
    positives, negatives = np.asarray(p, dtype=float)[y == 1], np.asarray(p, dtype=float)[y == 0]
    if min(len(positives), len(negatives)) < 2 or n_boot < 1:
        return None, 0
    batch = max(1, int(2e7 // (len(positives) * len(negatives))))
    result = bootstrap((positives, negatives), _auc_statistic, n_resamples=n_boot, batch=batch, vectorized=True,
                       method="percentile", rng=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)], n_boot


def _metrics(y: np.ndarray, p: np.ndarray, pred: np.ndarray, n_boot: int, seed: int) -> dict:
    """Every metric except threshold and per_source, from labels, probabilities and hard predictions."""
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    both_classes = len(np.unique(y)) == 2
    auc_ci, n_used = bootstrap_auc_ci(y, p, n_boot, seed)
    sensitivity = _none_if_nan(recall_score(y, pred, pos_label=1, zero_division=np.nan))
    return {
        "n": int(len(y)),
        "n_positive": int(y.sum()),
        "n_negative": int(len(y) - y.sum()),
        "accuracy": float(accuracy_score(y, pred)),
        "loss": float(log_loss(y, np.clip(p, PROB_EPSILON, 1 - PROB_EPSILON), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "precision": _none_if_nan(precision_score(y, pred, zero_division=np.nan)),
        "recall": sensitivity,
        "sensitivity": sensitivity,
        "specificity": _none_if_nan(recall_score(y, pred, pos_label=0, zero_division=np.nan)),
        "f1": _none_if_nan(f1_score(y, pred, zero_division=np.nan)),
        "auc": float(roc_auc_score(y, p)) if both_classes else None,
        "auc_ci95": auc_ci,
        "auc_ci95_resamples": n_used,
        "sensitivity_ci95": wilson_interval(tp, tp + fn),
        "specificity_ci95": wilson_interval(tn, tn + fp),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def _per_source(y: np.ndarray, p: np.ndarray, pred: np.ndarray, sources: list[str], n_boot: int, seed: int) -> dict:
    src = np.asarray(sources)
    return {s: _metrics(y[src == s], p[src == s], pred[src == s], n_boot, seed) for s in sorted(set(sources))}


def collection_sources(y: np.ndarray, sources: Sequence[str]) -> list[str]:
    """The sources that hold both classes (in dev: the COVID-19 collection, COVID-19 against other pneumonias)."""
    src, y = np.asarray(sources), np.asarray(y)
    return sorted(s for s in set(sources) if len(np.unique(y[src == s])) == 2)


def _within_collection(y: np.ndarray, p: np.ndarray, pred: np.ndarray, sources: list[str], n_boot: int,
                       seed: int) -> dict | None:
    """Metrics over the films of the collection_sources (where format and archive cannot tell the classes apart),
    with those sources; None where no source holds both classes."""
    both = collection_sources(y, sources)
    if not both:
        return None
    mask = np.isin(np.asarray(sources), both)
    return {"sources": both, **_metrics(y[mask], p[mask], pred[mask], n_boot, seed)}


def evaluate(
    name: str,
    y_true,
    probs,
    threshold: float,
    sources: list[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Evaluation:
    """Score predictions at `threshold` (positive when prob >= threshold); metrics undefined here are None."""
    y, p, sources = _check_inputs(y_true, probs, sources)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    pred = (p >= threshold).astype(int)
    metrics = {"threshold": float(threshold), **_metrics(y, p, pred, n_boot, seed)}
    if sources is not None:
        metrics["per_source"] = _per_source(y, p, pred, sources, n_boot, seed)
        metrics["within_collection"] = _within_collection(y, p, pred, sources, n_boot, seed)
    return Evaluation(name, y, p, float(threshold), metrics, sources)


def _spread(values: list[float | None]) -> dict:
    """Mean, sample standard deviation, min and max of the defined values."""
    defined = [v for v in values if v is not None]
    if not defined:
        return {"mean": None, "std": None, "min": None, "max": None, "n_folds": 0}
    return {
        "mean": float(np.mean(defined)),
        "std": float(np.std(defined, ddof=1)) if len(defined) > 1 else None,
        "min": float(min(defined)),
        "max": float(max(defined)),
        "n_folds": len(defined),
    }


def cross_validated_summary(evaluations: list[Evaluation], n_boot: int = 1000, seed: int = 0) -> dict:
    """Pool out-of-fold predictions (each fold at its own threshold) and summarise per-fold AUC/sens/spec.

    Pooled AUC ranks probabilities across folds, so it assumes the fold models are similarly calibrated;
    the per-fold spread shows how much the estimate depends on the split.
    """
    if not evaluations:
        raise ValueError("cross_validated_summary needs at least one evaluation")
    y = np.concatenate([e.y_true for e in evaluations])
    p = np.concatenate([e.probs for e in evaluations])
    pred = np.concatenate([(e.probs >= e.threshold).astype(int) for e in evaluations])
    thresholds = [e.threshold for e in evaluations]
    pooled = {"threshold": thresholds[0] if len(set(thresholds)) == 1 else None, **_metrics(y, p, pred, n_boot, seed)}
    if all(e.sources is not None for e in evaluations):
        sources = [s for e in evaluations for s in e.sources]
        pooled["per_source"] = _per_source(y, p, pred, sources, n_boot, seed)
        pooled["within_collection"] = _within_collection(y, p, pred, sources, n_boot, seed)
    folds = [
        {key: e.metrics[key] for key in ("n", "threshold", "auc", "sensitivity", "specificity")} | {"name": e.name}
        for e in evaluations
    ]
    return {
        "n_folds": len(evaluations),
        "pooled": pooled,
        "folds": folds,
        **{key: _spread([e.metrics[key] for e in evaluations]) for key in ("auc", "sensitivity", "specificity")},
    }


def pick_threshold(y: np.ndarray, probs: np.ndarray, target_sensitivity: float | None) -> tuple[float, str]:
    """Threshold from validation data and the rule that chose it; 0.5 when validation has one class only."""
    try:
        threshold = choose_threshold(y, probs, target_sensitivity)
    except ValueError as error:
        return 0.5, f"0.5 (validation data could not choose one: {error})"
    rule = f"sensitivity >= {target_sensitivity} on validation" if target_sensitivity else "Youden's J on validation"
    return threshold, rule


OPERATING_RULES = {"Youden's J": None, "sensitivity >= 0.90": 0.90, "sensitivity >= 0.95": 0.95}


def operating_points(validation: tuple[np.ndarray, np.ndarray], others: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """For each rule in OPERATING_RULES: its threshold on validation, and sensitivity/specificity with intervals
    on validation and on each other (y, probs) set at that threshold."""
    points = {}
    for rule, target in OPERATING_RULES.items():
        threshold, _ = pick_threshold(*validation, target)
        points[rule] = {"threshold": threshold}
        for name, (y, p) in {"validation": validation, **others}.items():
            m = evaluate(name, y, p, threshold, n_boot=0).metrics
            points[rule][name] = {k: m[k] for k in ("sensitivity", "sensitivity_ci95", "specificity", "specificity_ci95")}
    return points
