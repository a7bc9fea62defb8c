"""Write evaluation results as plots, JSON and a readable Markdown report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from model.config import CLASS_NAMES
from model.markdown import table
from model.training.evaluation import Evaluation

METRIC_ROWS = (
    ("n", "images"),
    ("n_positive", "COVID-19 positive images"),
    ("n_negative", "COVID-19 negative images"),
    ("threshold", "predict positive when probability >= threshold"),
    ("accuracy", "fraction classified correctly"),
    ("loss", "binary cross-entropy of the probabilities"),
    ("brier", "Brier score, mean squared error of the probabilities (lower is better)"),
    ("ece", "expected calibration error, 10 equal-width bins (0 = perfectly calibrated)"),
    ("precision", "positive predictive value, tp / (tp + fp)"),
    ("recall", "same as sensitivity"),
    ("sensitivity", "positives found, tp / (tp + fn)"),
    ("specificity", "negatives cleared, tn / (tn + fp)"),
    ("f1", "harmonic mean of precision and recall"),
    ("auc", "area under the ROC curve, threshold-free"),
)
CI_KEYS = {"auc": "auc_ci95", "sensitivity": "sensitivity_ci95", "specificity": "specificity_ci95"}
SOURCE_COLUMNS = ("n", "n_positive", "n_negative", "accuracy", "sensitivity", "specificity", "auc")

SHORTCUT_NOTE = (
    "A gradient-boosted model that sees only file facts (width, height, aspect, megapixels, bytes per pixel, "
    "channels, bit depth, JPEG/PNG/DICOM, grey or colour), scored out of fold with patient-grouped folds. "
    "An AUC near 1 means the images can be told apart without looking at the lungs; n/a: one class only."
)
HOW_TO_READ = """\
## How to read this

- The threshold was chosen on validation data only; metrics on a test set at that threshold are
  an honest estimate, while metrics on the validation set itself are optimistic.
- sensitivity_ci95 and specificity_ci95 are 95% Wilson intervals; auc_ci95 is a 95% percentile
  bootstrap over images (auc_ci95_resamples resamples had both classes and were used).
  Wide intervals mean too few images to tell.
- The reliability diagram plots, per probability bin, the observed fraction of positives against the
  mean probability; points on the diagonal mean a probability of 0.8 is right about 80% of the time.
- "n/a" marks a metric the data cannot define (AUC or specificity with one class,
  precision with no predicted positives).
- Per-source rows show whether performance depends on where an image came from; if a source holds
  only one class, the model may be recognising the source rather than the disease.
"""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _to_json(value):
    """json.dumps fallback for numpy values, paths and other objects in meta."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def plot_roc(evaluations: list[Evaluation], path: Path) -> None:
    """ROC curve per evaluation with AUC in the legend and its operating point marked."""
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    for e in evaluations:
        m = e.metrics
        if m["auc"] is None:
            continue
        fpr, tpr, _ = roc_curve(e.y_true, e.probs)
        (line,) = ax.plot(fpr, tpr, label=f"{e.name} (AUC = {m['auc']:.3f})")
        ax.plot(1 - m["specificity"], m["sensitivity"], "o", color=line.get_color(), clip_on=False)
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
           xlim=(0, 1), ylim=(0, 1.02), title="ROC curves (dots: chosen threshold)")
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=100)


def plot_calibration(evaluations: list[Evaluation], path: Path, bins: int = 10) -> None:
    """Reliability diagram: observed positive rate against mean probability per bin, Brier score in the legend."""
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for e in evaluations:
        observed, predicted = calibration_curve(e.y_true, e.probs, n_bins=bins, strategy="uniform")
        ax.plot(predicted, observed, marker="o", label=f"{e.name} (Brier = {e.metrics['brier']:.3f})")
    ax.set(xlabel="mean predicted probability", ylabel="observed fraction positive", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Reliability diagram ({bins} bins)")
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=100)


def plot_confusion(evaluation: Evaluation, path: Path) -> None:
    """2x2 confusion matrix with counts and percentages of each true class."""
    cm = evaluation.metrics["confusion_matrix"]
    counts = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        colour = "white" if shares[i, j] > 0.5 else "black"
        ax.text(j, i, f"{count}\n{shares[i, j]:.1%}", ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], [f"predicted\n{c}" for c in CLASS_NAMES])
    ax.set_yticks([0, 1], [f"true\n{c}" for c in CLASS_NAMES])
    ax.set_title(f"{evaluation.name} (threshold {evaluation.threshold:.3f})")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """One panel per metric of a Keras History.history-like dict, training and validation together."""
    bases = sorted({k.removeprefix("val_") for k in history}, key=lambda k: (k != "loss", k))
    fig = Figure(figsize=(5 * len(bases), 4))
    for ax, base in zip(np.atleast_1d(fig.subplots(1, len(bases))), bases):
        for key, label in ((base, "training"), (f"val_{base}", "validation")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], marker=".", label=label)
        ax.set(xlabel="epoch", ylabel=base, title=base)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _metrics_table(metrics: dict) -> list[str]:
    rows = [[key, metrics[key], metrics[CI_KEYS[key]] if key in CI_KEYS else "", meaning] for key, meaning in METRIC_ROWS]
    return table(["metric", "value", "95% CI", "meaning"], rows)


def _confusion_table(metrics: dict) -> list[str]:
    cm = metrics["confusion_matrix"]
    neg, pos = CLASS_NAMES
    rows = [[f"true {neg}", f"tn = {cm['tn']}", f"fp = {cm['fp']}"], [f"true {pos}", f"fn = {cm['fn']}", f"tp = {cm['tp']}"]]
    return table(["confusion_matrix", f"predicted {neg}", f"predicted {pos}"], rows)


def _source_table(per_source: dict) -> list[str]:
    return table(["source", *SOURCE_COLUMNS], [[source, *(m[c] for c in SOURCE_COLUMNS)] for source, m in per_source.items()])


def _shortcut_table(audit: dict) -> list[str]:
    rows = [[name, row["n"], row["file_facts_auc"], row["model_auc"]] for name, row in audit.items()]
    return table(["images", "n", "AUC from file facts only", "model's AUC"], rows)


COLLECTION_NOTE = ("The films of the sources that hold both classes (COVID-19 against other pneumonias of one "
                   "collection): archive and format cannot separate them, so this is the COVID-19-specific figure.")
GATE_NOTE = ("Share of each kind of input the input gate refused (no COVID-19 answer given). The metrics above are "
             "on the films it answered; a refused COVID-19 film is a film the model did not find.")


def gate_table(refused: dict) -> list[str]:
    """The input gate's refusals per row (class and source, or out-of-scope kind), with Wilson intervals."""
    rows = [[name, row["n"], row["refused"], row["share"], row["ci95"] or ""] for name, row in refused.items()]
    return table(["input", "n", "refused", "share refused", "95% CI"], rows)


def _markdown(evaluations: list[Evaluation], meta: dict, paths: dict[str, Path]) -> str:
    lines = ["# COVID-19 X-ray classifier evaluation", ""]
    if meta:
        rows = [[k, json.dumps(v, default=_to_json) if isinstance(v, (dict, list)) else v] for k, v in meta.items()]
        lines += table(["setting", "value"], rows) + [""]
    lines += ["![ROC curves](roc.png)", "", "![Reliability diagram](calibration.png)", ""]
    if "curves" in paths:
        lines += ["![Training curves](curves.png)", ""]
    for e in evaluations:
        m = e.metrics
        lines += [f"## {e.name}", ""] + _metrics_table(m)
        lines += ["", f"auc_ci95 from {m['auc_ci95_resamples']} bootstrap resamples.", ""]
        lines += _confusion_table(m) + ["", f"![Confusion matrix {e.name}]({paths[f'confusion_{e.name}'].name})", ""]
        if "per_source" in m:
            lines += ["### per_source", ""] + _source_table(m["per_source"]) + [""]
        if m.get("within_collection"):
            lines += ["### within_collection", "", COLLECTION_NOTE, ""]
            within = m["within_collection"]
            lines += table(["sources", *SOURCE_COLUMNS, "auc_ci95"],
                           [[" + ".join(within["sources"]), *(within[c] for c in (*SOURCE_COLUMNS, "auc_ci95"))]]) + [""]
        if "input_gate" in m:
            lines += ["### input gate", "", GATE_NOTE, ""] + gate_table(m["input_gate"]) + [""]
        if "shortcut_audit" in m:
            lines += ["### shortcut audit", "", SHORTCUT_NOTE, ""] + _shortcut_table(m["shortcut_audit"]) + [""]
    return "\n".join(lines + [HOW_TO_READ])


def write_report(
    out_dir,
    evaluations: list[Evaluation],
    history: dict[str, list[float]] | None = None,
    meta: dict | None = None,
) -> dict[str, Path]:
    """Write roc.png, calibration.png, confusion_<name>.png, curves.png (if history), report.json, report.md."""
    if not evaluations:
        raise ValueError("write_report needs at least one evaluation")
    names = [e.name for e in evaluations]
    if len({_safe_name(n) for n in names}) != len(names):
        raise ValueError(f"evaluation names must be distinct as file names, got {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta or {}

    paths = {"roc": out / "roc.png"}
    plot_roc(evaluations, paths["roc"])
    paths["calibration"] = out / "calibration.png"
    plot_calibration(evaluations, paths["calibration"])
    for e in evaluations:
        paths[f"confusion_{e.name}"] = out / f"confusion_{_safe_name(e.name)}.png"
        plot_confusion(e, paths[f"confusion_{e.name}"])
    if history:
        paths["curves"] = out / "curves.png"
        plot_curves(history, paths["curves"])

    paths["json"] = out / "report.json"
    report = {"meta": meta, "evaluations": {e.name: e.metrics for e in evaluations}}
    paths["json"].write_text(json.dumps(report, indent=2, default=_to_json, allow_nan=False))
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(_markdown(evaluations, meta, paths))
    return paths
