"""The Space's endpoints as plain functions: decode and predict an upload, preview it, record a correction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from feedback.readers import check_reader
from feedback.store import add_correction, corrections_for
from model.images import ImageError, load_bytes, read_grey
from model.serving.batching import BatchingPredictor
from model.serving.cache import PredictionCache
from model.serving.gradcam import overlay
from model.serving.predictor import Prediction, Predictor
from space import presentation as show


@dataclass
class Handlers:
    """What each button and upload of the Space does; predictor None means no model is available."""

    predictor: Predictor | None
    feedback_root: Path
    readers: dict[str, str]
    model_path: Path
    cached: PredictionCache | None = field(init=False)
    batched: BatchingPredictor | None = field(init=False)

    def __post_init__(self) -> None:
        self.cached = PredictionCache(self.predictor) if self.predictor else None
        self.batched = BatchingPredictor(self.predictor) if self.predictor else None

    def read_and_predict(self, path: str | None, batched: bool = False) -> tuple[bytes, str, Prediction]:
        """The upload's bytes, SHA-256 and prediction (with concurrent predictions when batched); gr.Error if none."""
        if self.cached is None:
            raise gr.Error(f"No model is loaded. Create one with: {show.train_command(self.model_path)}")
        if not path:
            raise gr.Error("Upload a chest X-ray first.")
        try:
            data = load_bytes(path)
            return data, *self.cached(data, self.batched.predict if batched else None)
        except ImageError as error:
            raise gr.Error(f"Cannot use {Path(path).name}: {error}") from None

    def predict(self, path: str | None):
        """COVID-19 probability, the decision at the model's threshold, a Grad-CAM overlay and earlier corrections."""
        if not path:
            gr.Warning("Upload a chest X-ray first.")
            return gr.skip()
        data, sha256, prediction = self.read_and_predict(path, batched=True)
        return (
            show.label_scores(prediction),
            show.decision_text(prediction),
            overlay(show.preview(prediction.grey), prediction.heatmap),
            show.corrections_markdown(corrections_for(self.feedback_root, sha256)),
        )

    def predict_new_file(self, path: str | None):
        return self.predict(path) if path else gr.skip()

    def show_file(self, path: str | None):
        """Preview the new file and clear the previous result."""
        try:
            image = show.preview(read_grey(path)) if path else None
        except ImageError:
            image = None
        return image, {}, "", None, "", ""

    def flag(self, path: str | None, correct_label: str, reader: str, password: str, note: str):
        """Record a reader's correction of the model's answer for this image; returns the record id in words."""
        if not check_reader(self.readers, reader or "", password or ""):
            raise gr.Error("Unknown reader or wrong password." if self.readers else "Enter your name to flag a prediction.")
        data, sha256, prediction = self.read_and_predict(path)
        try:
            record_id, created = add_correction(
                self.feedback_root, data, Path(path).name, correct_label, reader, note or "",
                "positive" if prediction.positive else "negative", prediction.probability, self.predictor.version,
            )
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return show.flag_confirmation(record_id, created, correct_label), show.corrections_markdown(
            corrections_for(self.feedback_root, sha256)
        )
