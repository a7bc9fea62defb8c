"""What a reader of the Space sees: a prediction, the model card and earlier corrections as labels and Markdown."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from feedback.store import LABELS, VERDICTS
from model.card import ModelCard
from model.config import NEGATIVE_NAME, POSITIVE_NAME, PREPROCESSING, fields_of
from model.gate import NO_GATE, OUT_OF_SCOPE_KINDS
from model.markdown import fmt, table
from model.preprocessing import shrink_grey
from model.serving.predictor import Prediction
from model.training.transfer import expected_at_new_hospital

NOTICE = (
    "**Research demo, not a diagnosis.** The model has not been validated clinically; do not use its output "
    "to make decisions about any patient."
)
LIMITATIONS = (
    "Developed on a small public collection: COVID-19 images mostly come from journal figures and ICU films, "
    "negatives largely from one hospital archive already resized to 224 px, so the model may recognise an "
    "image's source (resolution, compression, markers, tubes) rather than the disease.",
    "Checked outside its training sources on one hospital's COVID-19 films against NIH normals only (that set also "
    "chose the model); it does not tell COVID-19 from other pneumonias well, and performance on your images is unknown.",
    "Meant for frontal (PA/AP) chest radiographs of adults. An input check refuses what it recognises as something "
    f"else ({', '.join(k.short for k in OUT_OF_SCOPE_KINDS[:-1])} or {OUT_OF_SCOPE_KINDS[-1].short}), but it cannot "
    "catch everything: an answer for anything but an adult frontal chest film means nothing.",
    "Negative means \"not COVID-19 by this model\", not \"normal\": the development data counts other "
    "pneumonias as negative.",
    "The Grad-CAM overlay shows which regions drove the score, not where a lesion is.",
)
PREVIEW_SIDE = 512
_METRICS = (("auc", "AUC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("accuracy", "Accuracy"))
LABEL_WORDS = {"positive": POSITIVE_NAME, "negative": NEGATIVE_NAME, "uncertain": "Uncertain"}
CORRECTION_COLUMNS = ("record", "correct label", "reader", "date", "signed in", "model said", "note")
UNVERIFIED_NOTICE = (
    "*Stored as **unverified**: this Space has no reader accounts (open mode), so anyone can flag under any "
    "name. Unverified flags are left out of the default export for training.*"
)
SCOPE_WORDS = {"in_scope": "The input is an adult frontal chest film",
               "out_of_scope": "The input is not an adult frontal chest film (refusing it is right)"}
VERDICT_WORDS = {**LABEL_WORDS, **SCOPE_WORDS}
LABEL_CHOICES = [(VERDICT_WORDS[label], label) for label in VERDICTS]
REFUSED_INPUT_FLAG = (
    "The input check refused this image, so it gets no COVID-19 label. Say what the input is instead: "
    f"\"{SCOPE_WORDS['in_scope']}\" or \"{SCOPE_WORDS['out_of_scope']}\"."
)


OUT_OF_SCOPE_TITLE = "Not answered: this input is out of scope"


def label_scores(prediction: Prediction) -> dict[str, Any]:
    """The Label value (space.label.decision_label): the decision as its `label`, which under a threshold of 0.5 can
    be the less likely class, and the probability of COVID-19 and its complement as its confidences, likelier
    first; nothing for an input the gate refused."""
    if not prediction.answered:
        return {}
    scores = {POSITIVE_NAME: prediction.probability, NEGATIVE_NAME: 1.0 - prediction.probability}
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    return {"label": prediction.label, "confidences": [{"label": name, "confidence": p} for name, p in ranked]}


def decision_text(prediction: Prediction, card: ModelCard | None = None) -> str:
    """The decision in words: the class, what the threshold is for (screening_purpose), the probability against the
    threshold and the operating point that chose it (the card's rule), and the precision (against the card's); for
    a refused input, why there is no answer."""
    if not prediction.answered:
        return (f"**{OUT_OF_SCOPE_TITLE}.** {prediction.reason} No COVID-19 probability or Grad-CAM is given for it. "
                f"Model version `{prediction.model_version}`.")
    relation = "at or above" if prediction.positive else "below"
    purpose = screening_purpose(card)
    chosen = f" (operating point: {card.threshold_rule})" if card and card.threshold_rule else ""
    unchecked = f" *Note: {NO_GATE}, so it answers whatever it is given.*" if prediction.reason == NO_GATE else ""
    return (
        f"**{prediction.label}**{f' ({purpose})' if purpose else ''}: the model's probability of COVID-19 is "
        f"{prediction.probability:.2f}, {relation} its decision threshold of {prediction.threshold:.2f}{chosen}. "
        f"{served_in(prediction.precision, card.precision if card else 'float32')} {where_it_read(prediction)}"
        f"Model version `{prediction.model_version}`.{unchecked}"
    )


def where_it_read(prediction: Prediction) -> str:
    """What the preprocessing found in the upload (the overlay colours only the region the network read), with a
    trailing space; empty where the model has no such step."""
    said = []
    if prediction.inverted:
        said.append("The film's grey levels were reversed (bones dark, as a MONOCHROME1 film shown wrong); it was read "
                    "inverted back.")
    if prediction.lungs_found is not None:
        said.append("It read both lungs (the coloured region)." if prediction.lungs_found else
                    "It did not find both lungs, so it read the whole film (the coloured region).")
    return "".join(f"{sentence} " for sentence in said)


def _of_ten(share: float) -> int:
    return int(round(10 * share))


def screening_purpose(card: ModelCard | None) -> str:
    """What the card's threshold is for, in a reader's words: how many of 10 COVID-19 films it finds, at hospitals
    it never saw where the card estimated that (its `transfer`), else on its validation patients; "" when the card
    says neither."""
    if card is None:
        return ""
    if card.transfer:
        return (f"screening: finds about {_of_ten(card.transfer['sensitivity'])} of 10 COVID-19 films at hospitals "
                f"it never saw, and calls about {_of_ten(1 - card.transfer['specificity'])} of 10 normal films "
                "positive")
    sensitivity = (card.metrics.get("validation") or {}).get("sensitivity")
    if sensitivity is None:
        return ""
    return (f"screening: finds about {_of_ten(sensitivity)} of 10 COVID-19 films of its validation patients, "
            "fewer at hospitals it never saw")


def served_in(precision: str, chosen_in: str = "float32") -> str:
    """Which precision computed the answer, against the one the threshold was chosen in (the card's)."""
    if precision == chosen_in == "float32":
        return "Computed in float32."
    return (f"Computed in {precision} (the threshold was chosen in {chosen_in}; answers within 0.03 of it are "
            "recomputed in float32, so the precision never changes a decision).")


UNIQUE_ID_TAG = 0xA420
"""EXIF ImageUniqueID."""


def served_picture(rgb: np.ndarray) -> Image.Image:
    """An RGB picture to hand to Gradio, tagged with a random EXIF ImageUniqueID (no patient data).

    Gradio caches a returned picture under the hash of its encoded bytes and rewrites that file in place, so two
    identical overlays at once (two readers clicking one example) rewrote the file one of them was still
    downloading, who got an empty image; the tag gives every answer its own file."""
    picture = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[UNIQUE_ID_TAG] = uuid.uuid4().hex
    picture.info["exif"] = exif.tobytes()
    return picture


def preview(grey: np.ndarray, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """The uploaded X-ray shrunk to at most max_side pixels on its long side, for display."""
    return shrink_grey(grey, max_side)


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


def _features(hp) -> str:
    if hp.pooling == "flatten":
        return "block 5's map, flattened"
    return f"{'+'.join(hp.feature_layers)} pooled ({hp.pooling})"


def _head(hp) -> str:
    if not hp.hidden:
        return f"logistic (L2 {hp.l2:g})"
    return f"dense layers {list(hp.hidden)}"


def _input(hp) -> str:
    """The preprocessing steps the config turns on (off at their defaults), in its fields' words and order."""
    steps = [knob.metadata["card"].format(getattr(hp, knob.name)) for knob in fields_of(PREPROCESSING, type(hp))
             if getattr(hp, knob.name) != knob.default]
    return ", ".join([*steps, f"{hp.input_size} px square, grey stacked to three channels"])


def card_summary(card: ModelCard | None) -> str:
    """The model card as Markdown: identity, decision rule, training data, test metrics and limitations."""
    if card is None:
        return "### Model card\nNo model card was found, so the model's training data and test metrics are unknown."
    hp = card.config
    lines = [
        "### Model card",
        f"**{card.name}**, version `{card.version}`, created {card.created or 'at an unknown time'}.",
        "",
        f"- Base: VGG-16, weights from {card.base_weights_origin}; features: {_features(hp)}; head: {_head(hp)}.",
        f"- Input: {_input(hp)}.",
        f"- Decision threshold: {card.threshold:.2f} ({card.threshold_rule}).",
        *([f"- At a hospital it never saw (estimated): {expected_at_new_hospital(card.transfer)}."] if card.transfer else []),
    ]
    data = _data_table(card.training_data)
    if data:
        lines += ["", "**Data** (split by patient)", "", *data]
    test = card.metrics.get("test")
    if isinstance(test, dict):
        lines += ["", "**Held-out test set** (95% intervals in brackets)", "", *_metrics_table(test)]
    else:
        lines += ["", "**Held-out test set**: no test metrics recorded."]
    external = card.metrics.get("external")
    if isinstance(external, dict):
        lines += ["", "**External hospital** (COVID-19 films of one hospital against NIH normals; this set chose the "
                  "model, so its figures are optimistic)", "", *_metrics_table(external)]
    if card.calibration.get("method", "none") != "none":
        lines += ["", f"Probabilities are calibrated ({card.calibration['method']} scaling fitted on validation "
                  "patients)."]
    lines += ["", *gate_summary(card.gate)]
    lines += ["", "**Limitations**", "", *(f"- {text}" for text in LIMITATIONS)]
    if card.notes:
        lines.append(f"- {card.notes}")
    lines += ["", f"*Intended use*: {card.intended_use}"]
    return "\n".join(lines)


def gate_summary(gate: dict) -> list[str]:
    """The input gate in the card: what it is, and the share refused per kind of input on held-out images."""
    if not gate:
        return [f"**Input check**: {NO_GATE}; it answers anything it is given, even a photo."]
    lines = [f"**Input check** (version `{gate.get('version', '?')}`): {gate.get('method', '')}",
             "", "Share of held-out inputs refused (95% intervals):", ""]
    rows = [[name, row.get("n", "n/a"), _share(row)] for name, row in gate.get("refused", {}).items()]
    return lines + table(["input", "n", "refused"], rows) if rows else lines[:1]


def _share(row: dict) -> str:
    ci = row.get("ci95")
    interval = f" ({ci[0]:.0%}-{ci[1]:.0%})" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
    return fmt(row.get("share"), ".1%") + interval


def corrections_table(corrections: Sequence[Any]) -> dict[str, list]:
    """Earlier radiologist corrections of this image (feedback.store.Correction records) as a gr.Dataframe value.

    Reader names and notes go in as plain text cells (newlines kept), never as Markdown or HTML: they are typed by
    whoever flags, and the table is shown to everyone who later predicts the same image.
    """
    rows = [
        [f"#{c.id}", VERDICT_WORDS.get(c.correct_label, c.correct_label), c.reader, c.created_at[:10],
         "yes" if c.verified else "no (open mode)",
         f"{c.predicted_label} ({c.probability:.2f}, model {c.model_version})", c.note]
        for c in corrections
    ]
    return {"headers": list(CORRECTION_COLUMNS), "data": rows}


PUBLIC_CORRECTION_COLUMNS = ("earlier corrections",)
REVIEWED = ("Radiologists have reviewed this image. What they said is shown only to signed-in readers "
            "(after flagging, or in the Corrections tab).")


def public_corrections(corrections: Sequence[Any]) -> dict[str, list]:
    """What anyone who predicts an image sees of its earlier corrections: at most that readers reviewed it."""
    return {"headers": list(PUBLIC_CORRECTION_COLUMNS), "data": [[REVIEWED]] if corrections else []}


def flagging_unavailable(reason: str) -> str:
    """The page's notice while the corrections store cannot be written; predicting works as usual."""
    return (f"**Flagging is unavailable right now**: the corrections store cannot be written ({reason}). Predictions "
            "work as usual; a correction sent now is refused with this reason, not lost silently.")


def not_stored(reason: str) -> str:
    """The error a reader gets when a correction could not be stored."""
    return f"Your correction was NOT stored: {reason}. Nothing was recorded; please try again later."


def flag_refused(reason: str) -> str:
    """What the flag panel keeps saying, until the next try, when a flag was refused (a wrong password, a store that
    cannot be written, no upload)."""
    return f"**Not recorded.** {reason}"


def flag_confirmation(record_id: int, created: bool, correct_label: str, verified: bool = True) -> str:
    """The message after a flag, with the record id, and whether the flag counts as verified."""
    if created:
        text = f"Thank you. Your correction (**{correct_label}**) was recorded as record **#{record_id}**."
    else:
        text = (f"You had already recorded this correction (**{correct_label}**) as record **#{record_id}**; "
                "nothing new was stored.")
    return text if verified else f"{text}\n\n{UNVERIFIED_NOTICE}"


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


REVIEW_NEEDS_ACCOUNTS = (
    "**Reviewing corrections needs reader accounts.** This Space has none (open mode), so it cannot tell who is "
    "asking and shows no corrections here. Set `XRAY_READERS` or `XRAY_READERS_FILE` to turn review on."
)
REVIEW_SIGN_IN = "Sign in with your reader name and password to see the corrections; nothing is shown before."
REVIEW_COLUMNS = ("record", "time (UTC)", "model probability", "model said", "model version", "reader",
                  "reader's label", "note", "verified")
VERSION_COLUMNS = ("version", "predictions", "images", "corrected", "share")
CONFUSION_COLUMNS = ("reader's label \\ model said", LABEL_WORDS["positive"], LABEL_WORDS["negative"])
ALL = "(all)"
THUMBNAIL_SIDE = 96
MAX_REVIEW_ROWS = 200


def review_table(corrections: Sequence[Any]) -> dict[str, list]:
    """Corrections (feedback.store.Correction records) for the Corrections tab, newest first, as plain text cells."""
    rows = [
        [f"#{c.id}", c.created_at[:19].replace("T", " "), f"{c.probability:.2f}",
         LABEL_WORDS.get(c.predicted_label, c.predicted_label), c.model_version, c.reader,
         VERDICT_WORDS.get(c.correct_label, c.correct_label), c.note, "yes" if c.verified else "no (open mode)"]
        for c in corrections
    ]
    return {"headers": list(REVIEW_COLUMNS), "data": rows}


def counted(n: int, noun: str) -> str:
    """'**1** correction', '**2** corrections': the count in bold and the noun in the right number."""
    return f"**{n}** {noun}{'' if n == 1 else 's'}"


def review_status(shown: int, matching: int) -> str:
    """What the tab says after loading: who is signed in and how many corrections are shown."""
    more = f" (the newest {shown})" if shown < matching else ""
    match = "matches" if matching == 1 else "match"
    return (f"Signed in as a reader. {counted(matching, 'correction')} {match} the filters{more}; thumbnails are "
            "numbered by record.")


def review_counts(summary: Any) -> str:
    """The summary's counts and the readers' agreement in words (numbers only, no reader-typed text)."""
    lines = [f"{counted(summary.corrections, 'correction')} of {counted(summary.images, 'image')} by "
             f"{counted(summary.readers, 'reader')}."]
    agreement = summary.agreement
    if agreement is None:
        lines.append("Agreement between readers: no image was labelled by two or more readers.")
    else:
        kappa = "undefined (one label only)" if np.isnan(agreement.kappa) else f"{agreement.kappa:.2f}"
        lines.append(f"Agreement between readers on {agreement.images} images labelled by two or more "
                     f"({agreement.readers} readers): {agreement.method} **{kappa}**.")
    return "\n\n".join(lines)


def version_table(summary: Any) -> dict[str, list]:
    """Per model version: predictions shown, images predicted, how many of them were corrected and their share."""
    rows = [[v.model_version, v.predictions, v.predicted_images, v.corrected_predicted_images,
             "n/a" if v.share is None else f"{v.share:.1%}"] for v in summary.versions]
    return {"headers": list(VERSION_COLUMNS), "data": rows}


def confusion_table(summary: Any) -> dict[str, list]:
    """The model's decision (columns) against the reader's label (rows), as counts."""
    rows = [[LABEL_WORDS[label], *map(int, counts)] for label, counts in zip(LABELS, summary.confusion)]
    return {"headers": list(CONFUSION_COLUMNS), "data": rows}
