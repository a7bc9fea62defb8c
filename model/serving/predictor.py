"""The predictor the app and the predict CLI use: probability, decision and Grad-CAM of one image or a batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from model.artifact import DEFAULT_ARTIFACT, load_artifact
from model.calibration import calibrate
from model.card import ModelCard
from model.config import NEGATIVE_NAME, POSITIVE_NAME
from model.images import ImageError, Source, read_grey
from model.precision import resolve
from model.preprocessing import preprocessing_of, to_network_input
from model.serving.runtime import Runtime, keras_runtime

Input = Union[Source, np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """One image's result; `grey` is the decoded image at its own size, `heatmap` the Grad-CAM in [0, 1]."""

    probability: float
    positive: bool
    label: str
    threshold: float
    heatmap: np.ndarray
    grey: np.ndarray
    precision: str = "float32"
    model_version: str = ""


MARGIN = 0.03
"""A reduced-precision answer this close to the threshold is recomputed in float32 (bfloat16 moved dev and
external probabilities by at most 0.011), so a precision never changes a decision."""


@dataclass
class Predictor:
    """Probability, decision and Grad-CAM heatmap of one image from one forward pass.

    `exact` is the float32 runtime of a reduced-precision predictor: images whose probability falls within
    MARGIN of the threshold are run through it again, and their answer says float32.
    """

    card: ModelCard
    run: Runtime
    precision: str = "float32"
    exact: Runtime | None = None

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def version(self) -> str:
        return self.card.version

    def predict(self, source: Input) -> Prediction:
        """Raises model.images.ImageError for unusable files."""
        return self.predict_greys([_grey(source)])[0]

    def predict_many(self, sources: Sequence[Input]) -> list[Prediction | ImageError]:
        """One result per source in one network pass: a Prediction, or the ImageError of an unusable file.

        A source is a file path, its bytes, or a grey uint8 image already decoded.
        """
        results: list[Prediction | ImageError] = []
        for source in sources:
            try:
                results.append(_grey(source))
            except ImageError as error:
                results.append(error)
        good = [i for i, item in enumerate(results) if isinstance(item, np.ndarray)]
        for i, prediction in zip(good, self.predict_greys([results[i] for i in good])):
            results[i] = prediction
        return results

    def predict_greys(self, greys: Sequence[np.ndarray]) -> list[Prediction]:
        """Predictions of decoded grey images, all through the network together."""
        if not greys:
            return []
        preprocessing = preprocessing_of(self.card.config)
        inputs = np.stack([to_network_input(grey, preprocessing) for grey in greys])
        probs, cams = self.run(inputs)
        results = [self._prediction(float(p), cam, grey, self.precision) for p, cam, grey in zip(probs, cams, greys)]
        close = [i for i, r in enumerate(results) if self.exact and abs(r.probability - self.threshold) < MARGIN]
        if close:
            exact_probs, exact_cams = self.exact(inputs[close])
            for i, p, cam in zip(close, exact_probs, exact_cams):
                results[i] = self._prediction(float(p), cam, greys[i], "float32")
        return results

    def _prediction(self, raw: float, heatmap: np.ndarray, grey: np.ndarray, precision: str) -> Prediction:
        """The decision on the card-calibrated probability of the network's raw output."""
        probability = calibrate(raw, self.card.calibration)
        positive = probability >= self.threshold
        return Prediction(
            probability=probability,
            positive=positive,
            label=POSITIVE_NAME if positive else NEGATIVE_NAME,
            threshold=self.threshold,
            heatmap=heatmap,
            grey=grey,
            precision=precision,
            model_version=self.card.version,
        )


def _grey(source: Input) -> np.ndarray:
    return source if isinstance(source, np.ndarray) else read_grey(source)


def predictor_from_model(model, card: ModelCard, precision: str = "float32") -> Predictor:
    """A predictor running `model` in `precision` (float32 or bfloat16; see model.precision), with a float32
    runtime for answers near the threshold when the precision is reduced."""
    exact = keras_runtime(model, "float32") if precision != "float32" else None
    return Predictor(card=card, run=keras_runtime(model, precision), precision=precision, exact=exact)


def load_predictor(path: Path = DEFAULT_ARTIFACT, precision: str | None = None) -> Predictor:
    """The artifact's predictor; precision None means $XRAY_PRECISION, else auto (see model.precision.resolve)."""
    model, card = load_artifact(path)
    return predictor_from_model(model, card, resolve(precision))
