"""The saved model: a .keras file with its model_card.json beside it."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from model.card import ModelCard

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "default"


def save_artifact(model, out_dir: Path, card: ModelCard) -> Path:
    """Write out_dir/model.keras and out_dir/model_card.json (with the file's SHA-256 as its version)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    model.save(path)
    card = dataclasses.replace(card, version=hashlib.sha256(path.read_bytes()).hexdigest()[:12], model_file=MODEL_FILE)
    (out_dir / CARD_FILE).write_text(card.to_json())
    return path


def artifact_paths(path: Path) -> tuple[Path, Path]:
    """(model file, card file) of an artifact folder or a .keras file."""
    path = Path(path)
    model_path = path / MODEL_FILE if path.is_dir() else path
    return model_path, model_path.parent / CARD_FILE


def load_card(path: Path) -> ModelCard:
    """The validated card of an artifact; a missing card is an error, as a prediction needs its threshold."""
    _, card_path = artifact_paths(path)
    if not card_path.is_file():
        raise FileNotFoundError(f"no model card at {card_path}: the model's threshold and origin are unknown")
    return ModelCard.read(card_path)


def load_artifact(path: Path):
    """(keras model, ModelCard) from an artifact folder or a .keras file."""
    import keras

    model_path, _ = artifact_paths(path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; create one with `python -m model.train --data DIR --out DIR`")
    card = load_card(path)
    return keras.models.load_model(model_path, compile=False), card
