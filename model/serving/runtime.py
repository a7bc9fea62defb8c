"""What executes the network: engines by name, each a way to load an artifact's network file and run it as a
`Runtime` (a batch of network inputs -> probabilities, Grad-CAM maps, gate features) in a precision.

Another engine (ONNX Runtime, OpenVINO) is one new module with its `load` and `runtime`, plus a row of ENGINES;
preprocessing (numpy, model.preprocessing) and the overlay (model.serving.overlay) do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

Runtime = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Engine:
    """One way to execute a network: `load` reads the artifact's network file, `runtime` runs the loaded network in
    one of `precisions` (the first is the exact one, that near-threshold answers are recomputed in), `gate_width`
    says how many features the loaded network hands the input gate (checked against gate.npz at load)."""

    load: Callable[[Path], Any]
    runtime: Callable[[Any, str], Runtime]
    precisions: tuple[str, ...]
    gate_width: Callable[[Any], int]


def keras_runtime(model, precision: str = "float32") -> Runtime:
    """The Keras model in `precision` (float32 or bfloat16); probability, Grad-CAM and gate features from one
    forward pass."""
    from model.precision import in_precision
    from model.serving.gradcam import explainer

    return explainer(in_precision(model, precision))


def _load_keras(path: Path):
    from model.artifact import load_keras_model

    return load_keras_model(path)


def _keras_gate_width(model) -> int:
    from model.artifact import gate_width

    return gate_width(model)


ENGINES: dict[str, Engine] = {
    "keras": Engine(load=_load_keras, runtime=keras_runtime, precisions=("float32", "bfloat16"),
                    gate_width=_keras_gate_width),
}
DEFAULT_ENGINE = "keras"


def engine(name: str) -> Engine:
    """The engine called `name`; ValueError naming the known ones otherwise."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    return ENGINES[name]
