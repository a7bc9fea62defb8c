"""The search space as plain data: what each hyperparameter may be, a point of it as a configuration.

Every name in the space is a ModelConfig field, so a point is a configuration that model.train can
reproduce. Each hyperparameter's default is the seed's setting (SGD, lr 0.01, 20 epochs, flatten
1024/512), so grid search starts there. Nothing here imports TensorFlow, so the command line checks --space before
it starts; tuning/hypermodel.py trains a head from a point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Union

from model.config import (
    EQUALIZATIONS,
    HEADS,
    OPTIMIZERS,
    POOLINGS,
    REFERENCE,
    ModelConfig,
)

if TYPE_CHECKING:
    import keras_tuner


@dataclass(frozen=True)
class LogRange:
    """A float searched on a log scale between low and high."""

    low: float
    high: float


Spec = Union[tuple, LogRange]

SPACE: dict[str, Spec] = {
    "harmonize": (0, 224),
    "equalize": EQUALIZATIONS,
    "crop": (0.0, 0.05),
    "feature_layers": ("block5", "block4", "block4+block5", "block3+block4+block5"),
    "head": HEADS,
    "l2": (0.0, 1e-3, 1e-2, 0.1, 1.0),
    "optimizer": OPTIMIZERS,
    "learning_rate": LogRange(1e-4, 1e-1),
    "epochs": (5, 10, 20, 40),
    "batch_size": (16, 32, 64),
    "pooling": POOLINGS,
    "dense": ("1024-512", "512-256", "1024", "256"),
    "dropout": (0.0, 0.25, 0.5),
    "class_weight": (False, True),
}


def dense_name(dense: Iterable[int]) -> str:
    return "-".join(str(units) for units in dense)


def point_of(config: ModelConfig) -> dict:
    """The coordinates of a configuration in the space."""
    names = {"dense": dense_name(config.dense), "feature_layers": "+".join(config.feature_layers)}
    return {name: names.get(name, getattr(config, name)) for name in SPACE}


SEED_POINT = point_of(REFERENCE)


def config_of(point: dict, base: ModelConfig) -> ModelConfig:
    """base with the point's hyperparameters; names outside the space (Keras Tuner's own) are ignored.

    Flatten pooling reads block 5's map only, so it overrides feature_layers.
    """
    values = {name: value for name, value in point.items() if name in SPACE}
    if "dense" in values:
        values["dense"] = tuple(int(units) for units in str(values["dense"]).split("-"))
    if "feature_layers" in values:
        values["feature_layers"] = tuple(str(values["feature_layers"]).split("+"))
    if values.get("pooling", base.pooling) == "flatten":
        values["feature_layers"] = ("block5",)
    return dataclasses.replace(base, **values)


def declare(hp: keras_tuner.HyperParameters, space: dict[str, Spec]) -> dict:
    """Register the space on hp (defaults: the seed's setting where the space holds it) and return hp's values."""
    values = {}
    for name, spec in space.items():
        if isinstance(spec, LogRange):
            default = SEED_POINT[name] if spec.low <= SEED_POINT[name] <= spec.high else None
            values[name] = hp.Float(name, spec.low, spec.high, sampling="log", default=default)
        elif len(spec) == 1:
            values[name] = hp.Fixed(name, spec[0])
        elif all(isinstance(v, bool) for v in spec):
            values[name] = hp.Boolean(name, default=bool(SEED_POINT[name]))
        else:
            default = SEED_POINT[name] if SEED_POINT[name] in spec else None
            values[name] = hp.Choice(name, list(spec), default=default)
    return values


def _parse(text: str, like):
    if isinstance(like, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    return type(like)(text)


def narrow(space: dict[str, Spec], overrides: Iterable[str]) -> dict[str, Spec]:
    """The space with some hyperparameters replaced: NAME=V1,V2 for a choice, learning_rate=LOW:HIGH for the range."""
    space = dict(space)
    for override in overrides:
        name, _, text = override.partition("=")
        if name not in SPACE or not text:
            raise ValueError(f"--space expects NAME=VALUES with NAME one of {', '.join(SPACE)}; got {override!r}")
        try:
            if isinstance(SPACE[name], LogRange):
                low, high = (float(v) for v in text.split(":"))
                if not 0 < low <= high:
                    raise ValueError("need 0 < LOW <= HIGH")
                spec = LogRange(low, high)
                probes = [low, high]
            else:
                spec = tuple(dict.fromkeys(_parse(v, SPACE[name][0]) for v in text.split(",")))
                probes = list(spec)
            for value in probes:
                config = config_of({name: value}, REFERENCE)
                if min(config.epochs, config.batch_size, *config.dense) < 1:
                    raise ValueError("sizes and counts must be at least 1")
        except ValueError as error:
            raise ValueError(f"--space {override!r}: {error}") from None
        space[name] = spec
    return space
