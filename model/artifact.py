"""The saved model: a .keras file with its model_card.json beside it; installing one as the app's model, and rollback.

Installing into TARGET keeps the model it replaces in the sibling folder TARGET.previous (for
model/artifacts/default: model/artifacts/default.previous, ignored by git); a rollback swaps the two.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

from model.card import ModelCard
from model.gate import GATE_FILE, Gate, load_gate

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"
LOCALISER_FILE = "lungs.keras"
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "default"


class ArtifactError(ValueError):
    """An artifact's model file exists but cannot be loaded; the message says which file and why."""


def save_artifact(model, out_dir: Path, card: ModelCard) -> Path:
    """Write out_dir/model.keras and out_dir/model_card.json (with the file's SHA-256 as its version), and the lung
    localiser the preprocessing runs as out_dir/lungs.keras, so the folder is whole."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    model.save(path)
    if card.config.lungs:
        from model.preprocessing import localiser_for

        localiser_for(card.config.lungs).network.save(out_dir / LOCALISER_FILE)
    card = dataclasses.replace(card, version=file_version(path), model_file=MODEL_FILE)
    (out_dir / CARD_FILE).write_text(card.to_json())
    return path


def file_version(path: Path) -> str:
    """A model file's version: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


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


def artifact_gate(path: Path, card: ModelCard, width: int | None = None) -> Gate | None:
    """The input gate the card records (None if it records none); ValueError if its file is missing or broken, or,
    given `width` (how many features the artifact's network hands its gate), reads another number of features."""
    if not card.gate:
        return None
    folder = artifact_paths(path)[0].parent
    if not (folder / GATE_FILE).is_file():
        raise ValueError(f"the model card records an input gate but {folder / GATE_FILE} is missing")
    gate = load_gate(folder)
    if width is not None and width != gate.mean.shape[0]:
        raise ValueError(f"{folder / GATE_FILE} is an input gate over {gate.mean.shape[0]} features, but this network "
                         f"gives it {width}: the gate belongs to another model")
    return gate


def gate_width(model) -> int:
    """How many features the network hands its input gate (model.architecture.gate_outputs)."""
    from model.architecture import BASE_NAME, gate_network

    return int(gate_network(model.get_layer(BASE_NAME)).output.shape[-1])


def load_keras_model(model_path: Path):
    """The Keras network saved at model_path; ArtifactError with a one-line reason where it is not one."""
    import keras

    try:
        return keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        # Keras says "File not found" for a file that is there but is no .keras zip: name the real problem.
        raise ArtifactError(f"{model_path} is not a readable Keras model (corrupt, cut short or another format; "
                            f"{type(error).__name__})") from None


def load_artifact(path: Path, load_network=load_keras_model):
    """(network, ModelCard) from an artifact folder or a .keras file; `load_network` reads the network file (a
    Keras model by default; model.serving.runtime's engines pass their own)."""
    model_path, _ = artifact_paths(path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; create one with `python -m model.train --data DIR --out DIR`")
    card = load_card(path)
    model = load_network(model_path)
    if card.config.lungs:
        _use_artifact_localiser(model_path.parent / LOCALISER_FILE, card.config.lungs)
    return model, card


def _use_artifact_localiser(path: Path, version: str) -> None:
    """Load the artifact's lung localiser for its preprocessing; ArtifactError where it is missing, broken or not
    the version the card names."""
    from model.lungs import LocaliserError, load_localiser
    from model.preprocessing import use_localiser

    if not path.is_file():
        raise ArtifactError(f"the model card's preprocessing needs the lung localiser {path}, which is missing")
    try:
        localiser = load_localiser(path)
    except LocaliserError as error:
        raise ArtifactError(str(error)) from None
    if localiser.version != version:
        raise ArtifactError(f"{path} is lung localiser {localiser.version}, but the model card names {version}")
    use_localiser(localiser)


def previous_of(target: Path) -> Path:
    """Where installing into `target` keeps the model it replaced: the sibling folder TARGET.previous."""
    target = Path(target)
    return target.with_name(target.name + ".previous")


def _now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _current_card(target: Path) -> ModelCard | None:
    """The card of the model installed at `target`, or None when there is none yet."""
    model_path, card_path = artifact_paths(target)
    return ModelCard.read(card_path) if model_path.is_file() and card_path.is_file() else None


def install_artifact(candidate: Path, target: Path, verdict: str, data: str = "",
                     reports: dict[str, str] | None = None, dropped: Sequence[str] = ()) -> ModelCard:
    """Install the candidate's whole folder (model, card, reports) as `target`, with `reports` (file name -> text)
    written beside them; the replaced folder, reports included, goes whole to TARGET.previous. The new card.

    The new card's history is the replaced card's history plus one promotion entry naming both versions (and the
    safeguards of the replaced model the candidate `dropped`, where it dropped any).
    """
    model_path, _ = artifact_paths(candidate)
    card = load_card(candidate)
    target = Path(target)
    current = _current_card(target)
    entry = {"action": "promote", "version": card.version or file_version(model_path), "at": _now(),
             "replaced": current.version if current else "", "verdict": verdict, "data": str(data),
             **({"dropped": sorted(dropped)} if dropped else {})}
    card = dataclasses.replace(card, version=entry["version"], model_file=MODEL_FILE,
                               history=[*(current.history if current else []), entry])
    staging = target.with_name(target.name + ".incoming")
    shutil.rmtree(staging, ignore_errors=True)
    if Path(candidate).is_dir():
        shutil.copytree(candidate, staging, symlinks=False)
    else:
        staging.mkdir(parents=True)
        shutil.copy2(model_path, staging / MODEL_FILE)
    for name, text in (reports or {}).items():
        (staging / name).write_text(text)
    if card.gate and not (staging / GATE_FILE).is_file():
        shutil.copy2(model_path.parent / GATE_FILE, staging / GATE_FILE)
    (staging / CARD_FILE).write_text(card.to_json())
    if target.exists():
        shutil.rmtree(previous_of(target), ignore_errors=True)
        target.rename(previous_of(target))
    staging.rename(target)
    return card


def rollback_artifact(target: Path) -> ModelCard:
    """Swap `target` with TARGET.previous (a second rollback undoes the first); the restored card.

    The restored card's history continues the rolled-back card's history with one rollback entry.
    """
    target, previous = Path(target), previous_of(target)
    if not artifact_paths(previous)[0].is_file():
        raise FileNotFoundError(f"no previous model at {previous} to roll back to")
    current, restored = load_card(target), load_card(previous)
    entry = {"action": "rollback", "version": restored.version, "at": _now(), "replaced": current.version,
             "verdict": "rollback", "data": ""}
    restored = dataclasses.replace(restored, history=[*current.history, entry])
    swap = target.with_name(target.name + ".swap")
    shutil.rmtree(swap, ignore_errors=True)
    target.rename(swap)
    previous.rename(target)
    swap.rename(previous)
    (target / CARD_FILE).write_text(restored.to_json())
    return restored
