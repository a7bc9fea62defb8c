"""What a reader of the Space sees: a prediction, the model card and earlier corrections as labels and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from feedback.store import LABELS
from model.card import ModelCard
from model.config import NEGATIVE_NAME, POSITIVE_NAME
from model.markdown import fmt, table
from model.serving.predictor import Prediction

NOTICE = (
    "**Research demo, not a diagnosis.** The model has not been validated clinically; do not use its output "
    "to make decisions about any patient."
)
LIMITATIONS = (
    "Developed on a small public collection: COVID-19 images mostly come from journal figures and ICU films, "
    "negatives largely from one hospital archive already resized to 224 px, so the model may recognise an "
    "image's source (resolution, compression, markers, tubes) rather than the disease.",
    "Not validated on any external hospital's data; performance on your images is unknown.",
    "Meant for frontal (PA/AP) chest radiographs; a lateral view, a CT slice or a photo of a screen gets a "
    "meaningless answer.",
    "Negative means \"not COVID-19 by this model\", not \"normal\": the development data counts other "
    "pneumonias as negative.",
    "The Grad-CAM overlay shows which regions drove the score, not where a lesion is.",
)
PREVIEW_SIDE = 512
_METRICS = (("auc", "AUC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("accuracy", "Accuracy"))
LABEL_WORDS = {"positive": POSITIVE_NAME, "negative": NEGATIVE_NAME, "uncertain": "Uncertain"}
LABEL_CHOICES = [(LABEL_WORDS[label], label) for label in LABELS]


def label_scores(prediction: Prediction) -> dict[str, float]:
    """The gr.Label value: probability of each class."""
    return {POSITIVE_NAME: prediction.probability, NEGATIVE_NAME: 1.0 - prediction.probability}


def decision_text(prediction: Prediction) -> str:
    """The decision in words, with the probability, the threshold it was compared with and the precision."""
    relation = "at or above" if prediction.positive else "below"
    return (
        f"**{prediction.label}**: the model's probability of COVID-19 is {prediction.probability:.2f}, "
        f"{relation} its decision threshold of {prediction.threshold:.2f}. {served_in(prediction.precision)}"
    )


def served_in(precision: str) -> str:
    """Which precision computed the answer, against the float32 the threshold was chosen in."""
    if precision == "float32":
        return "Computed in float32."
    return f"Computed in {precision} (the threshold was chosen in float32; probabilities differ by at most about 0.03)."


def preview(grey: np.ndarray, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """The uploaded X-ray shrunk to at most max_side pixels on its long side, for display."""
    image = Image.fromarray(grey)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _with_interval(metrics: dict, key: str) -> str:
    ci = metrics.get(f"{key}_ci95")
    interval = f" ({ci[0]:.2f}-{ci[1]:.2f})" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
    return fmt(metrics.get(key), ".2f") + interval


def _data_table(training_data: dict) -> list[str]:
    columns = ("images", "patients", "positive", "negative")
    rows = [[split, *(summary.get(k, "n/a") for k in columns)] for split, summary in training_data.items()
            if isinstance(summary, dict)]
    return table(["split", *columns], rows) if rows else []


def _metrics_table(metrics: dict) -> list[str]:
    return table(["n", *(name for _, name in _METRICS)],
                 [[metrics.get("n", "n/a"), *(_with_interval(metrics, key) for key, _ in _METRICS)]])


def card_summary(card: ModelCard | None) -> str:
    """The model card as Markdown: identity, decision rule, training data, test metrics and limitations."""
    if card is None:
        return "### Model card\nNo model card was found, so the model's training data and test metrics are unknown."
    hp = card.config
    lines = [
        "### Model card",
        f"**{card.name}**, version `{card.version}`, created {card.created or 'at an unknown time'}.",
        "",
        f"- Base: VGG-16, weights from {card.base_weights_origin}; head: "
        f"{hp.pooling} pooling, dense layers {list(hp.dense)}.",
        f"- Input: {card.input_size} px square, grey stacked to three channels.",
        f"- Decision threshold: {card.threshold:.2f} ({card.threshold_rule}).",
    ]
    data = _data_table(card.training_data)
    if data:
        lines += ["", "**Data** (split by patient)", "", *data]
    test = card.metrics.get("test")
    if isinstance(test, dict):
        lines += ["", "**Held-out test set** (95% intervals in brackets)", "", *_metrics_table(test)]
    else:
        lines += ["", "**Held-out test set**: no test metrics recorded."]
    lines += ["", "**Limitations**", "", *(f"- {text}" for text in LIMITATIONS)]
    if card.notes:
        lines.append(f"- {card.notes}")
    lines += ["", f"*Intended use*: {card.intended_use}"]
    return "\n".join(lines)


def corrections_markdown(corrections: Sequence[Any]) -> str:
    """Earlier radiologist corrections of this image (feedback.store.Correction records), or a line saying none."""
    if not corrections:
        return "No radiologist has corrected this image yet."
    count = "1 correction" if len(corrections) == 1 else f"{len(corrections)} corrections"
    lines = [f"**Earlier radiologist corrections of this image ({count}):**", ""]
    for c in corrections:
        note = f": {c.note}" if c.note.strip() else ""
        lines.append(
            f"- #{c.id} **{c.correct_label}** by {c.reader} on {c.created_at[:10]} "
            f"(model {c.model_version} said {c.predicted_label}, {c.probability:.2f}){note}"
        )
    return "\n".join(lines)


def flag_confirmation(record_id: int, created: bool, correct_label: str) -> str:
    """The message after a flag, with the record id."""
    if created:
        return f"Thank you. Your correction (**{correct_label}**) was recorded as record **#{record_id}**."
    return (
        f"You had already recorded this correction (**{correct_label}**) as record **#{record_id}**; "
        "nothing new was stored."
    )


def train_command(path: Path) -> str:
    """The command that trains a model into the folder `path` names (a folder or its model.keras)."""
    out = Path(path).parent if Path(path).suffix == ".keras" else Path(path)
    if out.is_absolute() and out.is_relative_to(Path.cwd()):
        out = out.relative_to(Path.cwd())
    return f"python -m model.train --data DATA_DIR --out {out}"


def missing_model_notice(path: Path) -> str:
    """What the app says when there is no trained model to load."""
    return (
        f"**No model found at `{path}`.** Predictions are unavailable until one is trained, e.g. with\n\n"
        f"`{train_command(path)}`\n\n(or point the `MODEL_PATH` environment variable at an existing model folder)."
    )
