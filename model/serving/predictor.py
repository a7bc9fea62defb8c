"""The predictor the app and the predict CLI use: probability, decision and Grad-CAM of one image or a batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np

import settings
from model.artifact import DEFAULT_ARTIFACT, artifact_gate, load_artifact
from model.calibration import calibrate
from model.card import ModelCard
from model.config import NEGATIVE_NAME, POSITIVE_NAME
from model.gate import ANSWERED, UNCHECKED, Gate, Scope, header_scope
from model.images import ImageError, Source, image_facts, load_bytes, read_grey
from model.precision import requested_precision
from model.preprocessing import Box, Framing, network_input, preprocessing_of
from model.serving.runtime import DEFAULT_ENGINE, Runtime, engine


@dataclass(frozen=True)
class Decoded:
    """A decoded input: its grey pixels and what its DICOM header says it is (model.images.image_facts)."""

    grey: np.ndarray
    facts: dict = field(default_factory=dict)


Input = Union[Source, np.ndarray, Decoded]


@dataclass(frozen=True)
class Prediction:
    """One image's result; `grey` is the decoded image at its own size, `heatmap` the Grad-CAM in [0, 1] over
    `crop_box`, the region of `grey` the network saw (model.preprocessing.locate; None: all of it); `film_box` where
    the film lies in the upload, `inverted` whether the film was read inverted back (its grey levels were reversed
    in the upload), `lungs_found` whether the lung localiser found both lungs (None: the model has no such step).

    `status` is the input gate's verdict (model.gate): only an `answered` prediction has a decision (`label`,
    `positive`); an `out_of_scope` one has an empty label, and its probability and heatmap must not be shown.
    `reason` says why it was refused (or that the model has no input check); `gate_score` is the gate's
    in-scope probability, None where the header decided or there is no gate; `gate_looks_like` what the gate took
    an image it refused for (a kind of model.gate.OUT_OF_SCOPE_KINDS, or "unlike"), else empty.
    """

    probability: float
    positive: bool
    label: str
    threshold: float
    heatmap: np.ndarray
    grey: np.ndarray
    precision: str = "float32"
    status: str = ANSWERED
    reason: str = ""
    model_version: str = ""
    gate_score: float | None = None
    gate_looks_like: str = ""
    crop_box: Box | None = None
    film_box: Box | None = None
    inverted: bool = False
    lungs_found: bool | None = None

    @property
    def answered(self) -> bool:
        return self.status == ANSWERED


MARGIN = 0.03
"""A reduced-precision answer this close to the threshold is recomputed in float32 (bfloat16 moved dev and
external probabilities by at most 0.011), so a precision never changes a decision."""


@dataclass
class Predictor:
    """Input gate, probability, decision and Grad-CAM heatmap of one image from one forward pass.

    `exact` is the float32 runtime of a reduced-precision predictor: images whose probability falls within
    MARGIN of the threshold, or whose gate scores fall within MARGIN of the gate's thresholds, are run through
    it again, and their answer says float32. `gate` None means the model has no input check. `batch_size` is how
    many concurrent predictions a server should run together (model/serving/measure.py).
    """

    card: ModelCard
    run: Runtime
    precision: str = "float32"
    exact: Runtime | None = None
    gate: Gate | None = None
    batch_size: int = 1

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
        return self.predict_decoded([decode(source)])[0]

    def predict_many(self, sources: Sequence[Input]) -> list[Prediction | ImageError]:
        """One result per source in one network pass: a Prediction, or the ImageError of an unusable file.

        A source is a file path, its bytes, a grey uint8 image already decoded, or a Decoded.
        """
        results: list[Decoded | Prediction | ImageError] = []
        for source in sources:
            try:
                results.append(decode(source))
            except ImageError as error:
                results.append(error)
        good = [i for i, item in enumerate(results) if isinstance(item, Decoded)]
        for i, prediction in zip(good, self.predict_decoded([results[i] for i in good])):
            results[i] = prediction
        return results

    def predict_greys(self, greys: Sequence[np.ndarray]) -> list[Prediction]:
        """Predictions of decoded grey images (no header facts), all through the network together."""
        return self.predict_decoded([Decoded(grey) for grey in greys])

    def predict_decoded(self, items: Sequence[Decoded]) -> list[Prediction]:
        """Predictions of decoded inputs: those whose header rules them out skip the network, the rest go
        through it together, and answers near a threshold are recomputed in float32."""
        headers = [header_scope(item.facts) if self.gate else None for item in items]
        results: list[Prediction | None] = [
            None if scope is None else self._refused(item.grey, scope) for item, scope in zip(items, headers)
        ]
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            preprocessing = preprocessing_of(self.card.config)
            prepared = [network_input(items[i].grey, preprocessing) for i in todo]
            inputs = np.stack([array for array, _ in prepared])
            greys, framings = [items[i].grey for i in todo], [framing for _, framing in prepared]
            predictions, near = self._run(self.run, inputs, greys, framings, self.precision)
            for i, prediction in zip(todo, predictions):
                results[i] = prediction
            close = [k for k in range(len(todo)) if near[k]]
            if self.exact and close:
                exact, _ = self._run(self.exact, inputs[close], [greys[k] for k in close],
                                     [framings[k] for k in close], "float32")
                for k, prediction in zip(close, exact):
                    results[todo[k]] = prediction
        return results

    def _run(self, runtime: Runtime, inputs: np.ndarray, greys: list[np.ndarray], framings: list[Framing],
             precision: str) -> tuple[list[Prediction], np.ndarray]:
        """The predictions of a batch, and which lie close enough to a threshold (the card's, or either of the
        gate's: Gate.near_threshold) to be recomputed in float32 when the precision is reduced."""
        probs, cams, features = runtime(inputs)
        scopes = self.gate.check(features) if self.gate else [UNCHECKED] * len(greys)
        predictions = [self._prediction(float(p), cam, grey, framing, precision, scope)
                       for p, cam, grey, framing, scope in zip(probs, cams, greys, framings, scopes)]
        near = np.array([p.answered and abs(p.probability - self.threshold) < MARGIN for p in predictions])
        if self.gate:
            near |= self.gate.near_threshold(features, MARGIN)
        return predictions, near

    def _prediction(self, raw: float, heatmap: np.ndarray, grey: np.ndarray, framing: Framing, precision: str,
                    scope: Scope = UNCHECKED) -> Prediction:
        """The decision on the card-calibrated probability of the network's raw output, if the gate lets it in."""
        probability = calibrate(raw, self.card.calibration)
        positive = scope.answered and probability >= self.threshold
        label = (POSITIVE_NAME if positive else NEGATIVE_NAME) if scope.answered else ""
        return Prediction(
            probability=probability, positive=positive, label=label, threshold=self.threshold, heatmap=heatmap,
            grey=grey, precision=precision, status=scope.status, reason=scope.reason, model_version=self.version,
            gate_score=scope.score, gate_looks_like=scope.looks_like, crop_box=framing.box, film_box=framing.film,
            inverted=framing.inverted, lungs_found=framing.lungs,
        )

    def _refused(self, grey: np.ndarray, scope: Scope) -> Prediction:
        """A prediction the header ruled out: no network run, no probability, no heatmap."""
        return Prediction(
            probability=float("nan"), positive=False, label="", threshold=self.threshold,
            heatmap=np.zeros((1, 1), dtype="float32"), grey=grey, precision="none", status=scope.status,
            reason=scope.reason, model_version=self.version,
        )


def decode(source: Input) -> Decoded:
    """A file path, bytes, grey uint8 array or Decoded as Decoded; raises model.images.ImageError."""
    if isinstance(source, Decoded):
        return source
    if isinstance(source, np.ndarray):
        return Decoded(source)
    data = load_bytes(source)
    return Decoded(read_grey(data), image_facts(data))


def predictor_from_model(model, card: ModelCard, precision: str = "float32", gate: Gate | None = None,
                         batch_size: int = 1, engine_name: str = DEFAULT_ENGINE) -> Predictor:
    """A predictor running `model` on the engine `engine_name` (model.serving.runtime.ENGINES) in `precision`
    (float32 or bfloat16 for Keras; see model.precision), with a runtime in the engine's exact precision for answers
    near a threshold when the precision is reduced, and the input gate if there is one."""
    chosen = engine(engine_name)
    if precision not in chosen.precisions:
        raise ValueError(f"the {engine_name} engine runs {', '.join(chosen.precisions)}, not {precision}")
    exact = chosen.runtime(model, chosen.precisions[0]) if precision != chosen.precisions[0] else None
    return Predictor(card=card, run=chosen.runtime(model, precision), precision=precision, exact=exact, gate=gate,
                     batch_size=batch_size)


def load_predictor(path: Path = DEFAULT_ARTIFACT, precision: str | None = None, serving: bool = False,
                   engine_name: str = DEFAULT_ENGINE) -> Predictor:
    """The artifact's predictor on the engine `engine_name`, with its input gate; precision None means
    $XRAY_PRECISION, else auto, which times this model in each precision on this CPU (model/serving/measure.py,
    cached). For `serving` (a server batching concurrent predictions), the batch size is measured too unless
    $XRAY_MAX_BATCH_SIZE sets it."""
    chosen = engine(engine_name)
    model, card = load_artifact(path, chosen.load)
    gate = artifact_gate(path, card, chosen.gate_width(model) if card.gate else None)
    requested, forced_batch = requested_precision(precision), settings.max_batch_size()
    if requested == "auto" or (serving and forced_batch is None):
        from model.serving.measure import measured_serving

        choice = measured_serving(lambda p: predictor_from_model(model, card, p, gate, engine_name=engine_name),
                                  card, requested, forced_batch or settings.DEFAULT_MAX_BATCH_SIZE)
        return predictor_from_model(model, card, choice.precision, gate, forced_batch or choice.batch_size,
                                    engine_name)
    return predictor_from_model(model, card, requested, gate, forced_batch or settings.DEFAULT_MAX_BATCH_SIZE,
                                engine_name)
