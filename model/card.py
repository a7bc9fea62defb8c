"""The model card: a frozen, versioned record of what a saved model is, how it was made and how good it is."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from model.config import CLASS_NAMES, POSITIVE_NAME, ModelConfig

SCHEMA = 1
INTENDED_USE = "Research and teaching demo. Not a medical device; not for diagnosis."
_LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "keras-tuner", "scikit-learn", "numpy", "pillow", "pydicom")


class CardError(ValueError):
    """A model card that cannot be trusted: a required field is missing or has the wrong type."""


@dataclass(frozen=True)
class ModelCard:
    """Everything a reader of a prediction needs to know about the model that made it.

    `threshold` was chosen on validation patients by `threshold_rule` (on calibrated probabilities when
    `calibration` names a method, see model/calibration.py); `version` is the SHA-256 prefix of the saved
    model file (empty until the artifact is written); `history` lists promotions and rollbacks (model.promote);
    `gate` describes the input gate (model/gate.py: its file, version, thresholds, training data and figures),
    empty for a model without one; `precision` is what computed the features its head, calibration and threshold
    were fitted on (`--precision float32` reproduces a float32 card on any CPU); `transfer` is the operating point
    chosen for hospitals the model never saw and what it is expected to find there (model/training/transfer.py),
    empty for a threshold chosen on validation alone.
    """

    config: ModelConfig
    threshold: float
    threshold_rule: str
    base_weights: str
    base_weights_origin: str
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    notes: str = ""
    version: str = ""
    created: str = ""
    name: str = "xray-covid VGG-16"
    model_file: str = "model.keras"
    class_names: tuple[str, str] = CLASS_NAMES
    positive_class: str = POSITIVE_NAME
    libraries: dict = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    cross_validation: dict = field(default_factory=dict)
    selection: str = ""
    calibration: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    gate: dict = field(default_factory=dict)
    precision: str = "float32"
    transfer: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise CardError(f"model card field 'threshold' must be in [0, 1], got {self.threshold}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def safeguards(self) -> frozenset[str]:
        """What this model does to be trusted beyond answering, by the names model.promote's --drop takes."""
        return frozenset(name for name, held in SAFEGUARDS.items() if held(self))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}
        d["class_names"] = list(self.class_names)
        return {"input_size": self.input_size, "hyperparameters": self.config.to_dict(), **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model card") -> "ModelCard":
        """Validate and build a card; a missing or mistyped required field is a CardError naming it."""
        for name, kind in REQUIRED.items():
            if name not in d:
                raise CardError(f"{where} has no '{name}' field; retrain or re-export the model to write one")
            if not isinstance(d[name], kind) or isinstance(d[name], bool):
                raise CardError(f"{where} field '{name}' should be {KIND_NAMES[kind]}, got {d[name]!r}")
        for name, kind in OPTIONAL.items():
            if name in d and not isinstance(d[name], kind):
                raise CardError(f"{where} field '{name}' should be {KIND_NAMES[kind]}, got {d[name]!r}")
        try:
            config = ModelConfig.from_dict(d["hyperparameters"])
        except (TypeError, ValueError) as error:
            raise CardError(f"{where} field 'hyperparameters' is invalid: {error}") from None
        names = {f.name for f in dataclasses.fields(cls)} - {"config"}
        return cls(config=config, **{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text: str, where: str = "model card") -> "ModelCard":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as error:
            raise CardError(f"{where} is not valid JSON ({error})") from None
        if not isinstance(d, dict):
            raise CardError(f"{where} should hold a JSON object")
        return cls.from_dict(d, where)

    @classmethod
    def read(cls, path: Path) -> "ModelCard":
        return cls.from_json(Path(path).read_text(), str(path))


SAFEGUARDS = {
    "gate": lambda card: bool(card.gate),
    "calibration": lambda card: bool(card.calibration),
    "operating-point": lambda card: bool(card.transfer),
    "film-finder": lambda card: card.config.film,
    "lung-crop": lambda card: bool(card.config.lungs),
}
"""Each safeguard a model card can record (the input gate, calibration, the operating point chosen for hospitals
never seen, reading the film and the lungs instead of the frame) and how to tell that the card has it."""

NUMBER = (int, float)
KIND_NAMES = {NUMBER: "a number", str: "text", dict: "an object", list: "a list"}
REQUIRED = {
    "threshold": NUMBER,
    "threshold_rule": str,
    "hyperparameters": dict,
    "base_weights": str,
    "base_weights_origin": str,
}
OPTIONAL = {"calibration": dict, "history": list, "gate": dict, "precision": str, "transfer": dict}


def weights_origin(weights: str) -> str:
    """Human description of where the base weights came from."""
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


def new_card(config: ModelConfig, threshold: float, threshold_rule: str, training_data: dict, metrics: dict,
             notes: str = "") -> ModelCard:
    """A card for a model trained now with `config`, before its file (and so its version) exists."""
    return ModelCard(
        config=config,
        threshold=threshold,
        threshold_rule=threshold_rule,
        base_weights=config.weights if config.weights in ("imagenet", "none") else Path(config.weights).name,
        base_weights_origin=weights_origin(config.weights),
        training_data=training_data,
        metrics=metrics,
        notes=notes,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        libraries=library_versions(),
    )
