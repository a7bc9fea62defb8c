"""A saved model's calibrated probabilities on examples, through its own base, preprocessing and card."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from model.architecture import BASE_NAME, head_of
from model.calibration import calibrate
from model.card import ModelCard
from model.data import Example
from model.features import DEFAULT_CACHE, Features, feature_network, featurize
from model.preprocessing import preprocessing_of
from model.training.head import probabilities


def score_saved(model, card: ModelCard, examples: Sequence[Example], cache_dir: Path | None = DEFAULT_CACHE,
                precision: str = "float32") -> tuple[Features, np.ndarray]:
    """A saved model's features (through its own base and preprocessing, in `precision`, cached) and
    calibrated probabilities."""
    preprocessing = preprocessing_of(card.config)
    network, key = feature_network(model.get_layer(BASE_NAME), precision, preprocessing)
    scored = featurize(network, key, examples, 0, cache_dir, 0, preprocessing)
    return scored, calibrate(probabilities(head_of(model), scored), card.calibration)
