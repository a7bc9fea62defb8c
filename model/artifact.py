"""The saved model: a .keras file with model_card.json beside it, and the predictor the app and CLIs use."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from model.config import CLASS_NAMES, NEGATIVE_NAME, POSITIVE_NAME, ModelConfig
from model.images import Source, read_grey, to_network_input

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "default"
_LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "keras-tuner", "scikit-learn", "numpy", "pillow", "pydicom")


def weights_origin(weights: str) -> str:
    """Human description of where the base weights came from, for the model card."""
    from model.offline_weights import ORIGIN

    if weights == "imagenet":
        return "ImageNet (Keras applications VGG-16)"
    if weights in ("none", "None", "", None):
        return "random initialisation (no pretrained weights)"
    return ORIGIN if "hed" in Path(weights).name.lower() else f"weights file {Path(weights).name}"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def make_card(
    config: ModelConfig,
    threshold: float,
    training_data: dict,
    metrics: dict,
    threshold_rule: str,
    notes: str = "",
) -> dict:
    """The model card: everything a reader of a prediction needs to know about the model that made it."""
    return {
        "name": "xray-covid VGG-16",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input_size": config.input_size,
        "class_names": list(CLASS_NAMES),
        "positive_class": POSITIVE_NAME,
        "threshold": float(threshold),
        "threshold_rule": threshold_rule,
        "base_weights": config.weights if config.weights in ("imagenet", "none") else Path(config.weights).name,
        "base_weights_origin": weights_origin(config.weights),
        "hyperparameters": config.to_dict(),
        "training_data": training_data,
        "metrics": metrics,
        "libraries": library_versions(),
        "intended_use": "Research and teaching demo. Not a medical device; not for diagnosis.",
        "notes": notes,
    }


def save_artifact(model, out_dir: Path, card: dict) -> Path:
    """Write out_dir/model.keras and out_dir/model_card.json (with the file's SHA-256 as its version)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    model.save(path)
    card = dict(card, version=hashlib.sha256(path.read_bytes()).hexdigest()[:12], model_file=MODEL_FILE)
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, default=str) + "\n")
    return path


def _paths(path: Path) -> tuple[Path, Path]:
    path = Path(path)
    model_path = path / MODEL_FILE if path.is_dir() else path
    return model_path, model_path.parent / CARD_FILE


def load_card(path: Path) -> dict:
    _, card_path = _paths(path)
    return json.loads(card_path.read_text()) if card_path.is_file() else {}


def load_artifact(path: Path):
    """(keras model, card dict) from an artifact folder or a .keras file."""
    import keras

    model_path, _ = _paths(path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; create one with `python -m model.train --data DIR --out DIR`")
    return keras.models.load_model(model_path, compile=False), load_card(path)


@dataclass(frozen=True)
class Prediction:
    """One image's result; `grey` is the decoded image at its own size, `heatmap` the Grad-CAM in [0, 1]."""

    probability: float
    positive: bool
    label: str
    threshold: float
    heatmap: np.ndarray
    grey: np.ndarray


@dataclass
class Predictor:
    """Probability, decision and Grad-CAM heatmap of one image from one forward pass."""

    model: object
    card: dict
    explain: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

    @property
    def input_size(self) -> int:
        return int(self.model.input_shape[1])

    @property
    def threshold(self) -> float:
        return float(self.card.get("threshold", 0.5))

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unversioned"))

    def predict(self, source: Source) -> Prediction:
        """Raises model.images.ImageError for unusable files."""
        grey = read_grey(source)
        probs, cams = self.explain(to_network_input(grey, self.input_size)[None])
        probability = float(probs[0])
        positive = probability >= self.threshold
        return Prediction(
            probability=probability,
            positive=positive,
            label=POSITIVE_NAME if positive else NEGATIVE_NAME,
            threshold=self.threshold,
            heatmap=cams[0],
            grey=grey,
        )


def predictor_from_model(model, card: dict | None = None) -> Predictor:
    from model.gradcam import explainer

    return Predictor(model=model, card=card or {}, explain=explainer(model))


def load_predictor(path: Path = DEFAULT_ARTIFACT) -> Predictor:
    model, card = load_artifact(path)
    return predictor_from_model(model, card)
