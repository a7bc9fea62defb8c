"""One preprocessing for training, evaluation and serving: the same file becomes the same array on every path."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest

from model.card import new_card
from model.config import EQUALIZATIONS, ModelConfig
from model.data import make_dataset, scan_folder
from model.features import _view_pixels
from model.images import read_grey
from model.preprocessing import (
    Preprocessing,
    crop_border,
    equalize,
    preprocessing_of,
    to_network_input,
)
from model.serving.predictor import Predictor

OPTIONS = list(itertools.product((0.0, 0.1), (0, 48), EQUALIZATIONS))


@pytest.mark.parametrize(("crop", "harmonize", "equalization"), OPTIONS)
def test_serving_and_training_prepare_a_file_identically(fixture_dir, crop, harmonize, equalization):
    config = ModelConfig(weights="none", input_size=32, crop=crop, harmonize=harmonize, equalize=equalization)
    example = scan_folder(fixture_dir)[0]
    data = example.path.read_bytes()
    training = _view_pixels(data, 0, hashlib.sha256(data).hexdigest(), preprocessing_of(config), seed=0)
    dataset = next(iter(make_dataset([example], preprocessing_of(config), batch_size=1)))[0].numpy()[0]
    seen = []

    def run(batch: np.ndarray):
        seen.append(batch)
        return np.array([0.5]), np.zeros((1, 1, 1)), np.zeros((1, 2))

    Predictor(new_card(config, 0.5, "fixed", {}, {}), run).predict(example.path)
    np.testing.assert_array_equal(seen[0][0], training)
    np.testing.assert_array_equal(dataset, training)


def test_each_step_changes_the_input_as_its_name_says(fixture_dir):
    grey = read_grey(scan_folder(fixture_dir)[0].path)
    assert crop_border(grey, 0.1).shape == (grey.shape[0] - 2 * round(grey.shape[0] * 0.1),
                                            grey.shape[1] - 2 * round(grey.shape[1] * 0.1))
    flat = equalize(grey, "global")
    assert abs(np.histogram(flat, 8, (0, 256))[0].std()) < np.histogram(grey, 8, (0, 256))[0].std()
    assert equalize(grey, "clahe").dtype == np.uint8 and not np.array_equal(equalize(grey, "clahe"), grey)
    plain, harmonized = (to_network_input(grey, Preprocessing(64, harmonize=h)) for h in (0, 32))
    assert plain.shape == harmonized.shape == (64, 64, 3) and not np.array_equal(plain, harmonized)


def test_the_preprocessing_names_its_cache_entries_apart():
    keys = {Preprocessing(256, c, h, e).key for c, h, e in OPTIONS}
    assert len(keys) == len(OPTIONS)
