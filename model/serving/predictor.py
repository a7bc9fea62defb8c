"""The predictor the app and the predict CLI use: probability, decision and Grad-CAM of one image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.artifact import DEFAULT_ARTIFACT, load_artifact
from model.calibration import calibrate
from model.card import ModelCard
from model.config import NEGATIVE_NAME, POSITIVE_NAME
from model.images import Source, read_grey
from model.preprocessing import preprocessing_of, to_network_input
from model.serving.runtime import Runtime, keras_runtime


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

    card: ModelCard
    run: Runtime

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def version(self) -> str:
        return self.card.version

    def predict(self, source: Source) -> Prediction:
        """Raises model.images.ImageError for unusable files."""
        grey = read_grey(source)
        probs, cams = self.run(to_network_input(grey, preprocessing_of(self.card.config))[None])
        probability = calibrate(float(probs[0]), self.card.calibration)
        positive = probability >= self.threshold
        return Prediction(
            probability=probability,
            positive=positive,
            label=POSITIVE_NAME if positive else NEGATIVE_NAME,
            threshold=self.threshold,
            heatmap=cams[0],
            grey=grey,
        )


def predictor_from_model(model, card: ModelCard) -> Predictor:
    return Predictor(card=card, run=keras_runtime(model))


def load_predictor(path: Path = DEFAULT_ARTIFACT) -> Predictor:
    model, card = load_artifact(path)
    return predictor_from_model(model, card)
