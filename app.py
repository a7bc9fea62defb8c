"""The Space: upload a chest X-ray, see the model's probability, decision and Grad-CAM, and flag wrong answers.

Run with `python app.py` (port 7860; PORT or GRADIO_SERVER_PORT override it). MODEL_PATH picks the model,
XRAY_FEEDBACK_DIR the corrections store, XRAY_READERS or XRAY_READERS_FILE the reader accounts.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from feedback.readers import check_reader, load_readers
from feedback.store import add_correction, corrections_for, default_root
from model import presentation as show
from model.artifact import DEFAULT_ARTIFACT, Prediction, Predictor, load_predictor
from model.gradcam import overlay
from model.images import MAX_FILE_BYTES, ImageError, file_sha256, load_bytes, read_grey

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")
LABEL_CHOICES = [("COVID-19 positive", "positive"), ("COVID-19 negative", "negative"), ("Uncertain", "uncertain")]


@dataclass
class PredictionCache:
    """The latest predictions by image SHA-256, so flagging right after predicting does not rerun the network."""

    predictor: Predictor
    size: int = 64
    _items: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, data: bytes) -> tuple[str, Prediction]:
        sha256 = file_sha256(data)
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return sha256, self._items[sha256]
        prediction = self.predictor.predict(data)
        with self._lock:
            self._items[sha256] = prediction
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return sha256, prediction


def example_files(folder: Path = EXAMPLES_DIR) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES) if folder.is_dir() else []


def build_demo(
    predictor: Predictor | None,
    feedback_root: Path,
    readers: dict[str, str],
    model_path: Path = DEFAULT_ARTIFACT,
) -> gr.Blocks:
    """The app's UI and its `predict` and `flag` endpoints; predictor None means no model is available."""
    cached = PredictionCache(predictor) if predictor else None

    def read_and_predict(path: str | None) -> tuple[bytes, str, Prediction]:
        if cached is None:
            raise gr.Error(f"No model is loaded. Create one with: {show.train_command(model_path)}")
        if not path:
            raise gr.Error("Upload a chest X-ray first.")
        try:
            data = load_bytes(path)
            return data, *cached(data)
        except ImageError as error:
            raise gr.Error(f"Cannot use {Path(path).name}: {error}") from None

    def predict(path: str | None):
        """COVID-19 probability, the decision at the model's threshold, a Grad-CAM overlay and earlier corrections."""
        if not path:
            gr.Warning("Upload a chest X-ray first.")
            return gr.skip()
        data, sha256, prediction = read_and_predict(path)
        return (
            show.label_scores(prediction),
            show.decision_text(prediction),
            overlay(show.preview(prediction.grey), prediction.heatmap),
            show.corrections_markdown(corrections_for(feedback_root, sha256)),
        )

    def predict_new_file(path: str | None):
        return predict(path) if path else gr.skip()

    def show_file(path: str | None):
        """Preview the new file and clear the previous result."""
        try:
            image = show.preview(read_grey(path)) if path else None
        except ImageError:
            image = None
        return image, {}, "", None, "", ""

    def flag(path: str | None, correct_label: str, reader: str, password: str, note: str):
        """Record a reader's correction of the model's answer for this image; returns the record id in words."""
        if not check_reader(readers, reader or "", password or ""):
            raise gr.Error("Unknown reader or wrong password." if readers else "Enter your name to flag a prediction.")
        data, sha256, prediction = read_and_predict(path)
        try:
            record_id, created = add_correction(
                feedback_root, data, Path(path).name, correct_label, reader, note or "",
                "positive" if prediction.positive else "negative", prediction.probability, predictor.version,
            )
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return show.flag_confirmation(record_id, created, correct_label), show.corrections_markdown(
            corrections_for(feedback_root, sha256)
        )

    with gr.Blocks(title="xray-covid: COVID-19 from a chest X-ray (research demo)") as demo:
        gr.Markdown("# COVID-19 from a chest X-ray\n\n" + show.NOTICE)
        if predictor is None:
            gr.Markdown(show.missing_model_notice(model_path))
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Chest X-ray: PNG, JPEG, TIFF, BMP or DICOM", type="filepath")
                preview = gr.Image(label="Your X-ray", interactive=False, height=320)
                analyse = gr.Button("Analyse", variant="primary")
                gr.Examples(
                    example_files(), inputs=upload, label="Examples (real X-rays, see examples/README.md)",
                    api_visibility="private",
                )
            with gr.Column():
                scores = gr.Label(label="Probability", show_heading=False)
                decision = gr.Markdown(label="Decision")
                heatmap = gr.Image(
                    label="Grad-CAM overlay (regions that drove the score)", format="png", interactive=False, height=320
                )
                earlier = gr.Markdown(label="Earlier corrections")
        with gr.Accordion("Flag as wrong (radiologists)", open=False):
            correct = gr.Radio(LABEL_CHOICES, label="Correct label")
            reader = gr.Textbox(label="Reader name (your account)" if readers else "Your name")
            password = gr.Textbox(label="Password", type="password", visible=bool(readers))
            note = gr.Textbox(label="Note (optional)", lines=2)
            send = gr.Button("Flag as wrong", variant="stop")
            confirmation = gr.Markdown(label="Confirmation")
        gr.Markdown(show.card_summary(predictor.card if predictor else {}))

        results = [scores, decision, heatmap, earlier]
        upload.change(show_file, upload, [preview, *results, confirmation], api_visibility="private").then(
            predict_new_file, upload, results, api_visibility="private"
        )
        analyse.click(predict, upload, results, api_name="predict")
        send.click(flag, [upload, correct, reader, password, note], [confirmation, earlier], api_name="flag")
    return demo


def launch(demo: gr.Blocks, feedback_root: Path, **kwargs):
    """Serve with the upload cap, and with the corrections store blocked from Gradio's file route."""
    blocked = [p for p in os.environ.get("GRADIO_BLOCKED_PATHS", "").split(",") if p.strip()]
    blocked.append(str(Path(feedback_root).resolve()))
    return demo.launch(max_file_size=MAX_FILE_BYTES, blocked_paths=blocked, **kwargs)


def main() -> None:
    model_path = Path(os.environ.get("MODEL_PATH") or DEFAULT_ARTIFACT)
    try:
        predictor = load_predictor(model_path)
    except FileNotFoundError as error:
        print(f"Starting without a model: {error}", file=sys.stderr)
        predictor = None
    feedback_root = default_root()
    demo = build_demo(predictor, feedback_root, load_readers(), model_path)
    port = int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)
    launch(demo, feedback_root, server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), server_port=port)


if __name__ == "__main__":
    main()
