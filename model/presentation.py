"""What a reader sees: a prediction, the model card and earlier corrections turned into labels and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from model.artifact import Prediction
from model.config import NEGATIVE_NAME, POSITIVE_NAME

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


def label_scores(prediction: Prediction) -> dict[str, float]:
    """The gr.Label value: probability of each class."""
    return {POSITIVE_NAME: prediction.probability, NEGATIVE_NAME: 1.0 - prediction.probability}


def decision_text(prediction: Prediction) -> str:
    """The decision in words, with the probability and the threshold it was compared with."""
    relation = "at or above" if prediction.positive else "below"
    return (
        f"**{prediction.label}**: the model's probability of COVID-19 is {prediction.probability:.2f}, "
        f"{relation} its decision threshold of {prediction.threshold:.2f}."
    )


def preview(grey: np.ndarray, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """The uploaded X-ray shrunk to at most max_side pixels on its long side, for display."""
    image = Image.fromarray(grey)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "n/a"


def _interval(value: Any) -> str:
    return f" ({value[0]:.2f}-{value[1]:.2f})" if isinstance(value, (list, tuple)) and len(value) == 2 else ""


def _data_table(training_data: dict) -> list[str]:
    rows = ["| split | images | patients | positive | negative |", "|---|---|---|---|---|"]
    for split, summary in training_data.items():
        if isinstance(summary, dict):
            cells = (summary.get(k, "n/a") for k in ("images", "patients", "positive", "negative"))
            rows.append(f"| {split} | " + " | ".join(map(str, cells)) + " |")
    return rows if len(rows) > 2 else []


def _metrics_table(metrics: dict) -> list[str]:
    rows = ["| " + " | ".join(["n"] + [name for _, name in _METRICS]) + " |", "|---" * (len(_METRICS) + 1) + "|"]
    cells = [str(metrics.get("n", "n/a"))]
    for key, _ in _METRICS:
        cells.append(_number(metrics.get(key)) + _interval(metrics.get(f"{key}_ci95")))
    return rows + ["| " + " | ".join(cells) + " |"]


def card_summary(card: dict) -> str:
    """The model card as Markdown: identity, decision rule, training data, test metrics and limitations."""
    if not card:
        return "### Model card\nNo model card was found, so the model's training data and test metrics are unknown."
    hp = card.get("hyperparameters", {})
    lines = [
        "### Model card",
        f"**{card.get('name', 'model')}**, version `{card.get('version', 'unversioned')}`, "
        f"created {card.get('created', 'at an unknown time')}.",
        "",
        f"- Base: VGG-16, weights from {card.get('base_weights_origin', 'an unknown origin')}; head: "
        f"{hp.get('pooling', '?')} pooling, dense layers {hp.get('dense', '?')}.",
        f"- Input: {card.get('input_size', '?')} px square, grey stacked to three channels.",
        f"- Decision threshold: {_number(card.get('threshold', 0.5))} "
        f"({card.get('threshold_rule', 'rule not recorded')}).",
    ]
    data = _data_table(card.get("training_data", {}))
    if data:
        lines += ["", "**Data** (split by patient)", "", *data]
    test = card.get("metrics", {}).get("test")
    if isinstance(test, dict):
        lines += ["", "**Held-out test set** (95% intervals in brackets)", "", *_metrics_table(test)]
    else:
        lines += ["", "**Held-out test set**: no test metrics recorded."]
    lines += ["", "**Limitations**", "", *(f"- {text}" for text in LIMITATIONS)]
    if card.get("notes"):
        lines.append(f"- {card['notes']}")
    lines += ["", f"*Intended use*: {card.get('intended_use', NOTICE)}"]
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
