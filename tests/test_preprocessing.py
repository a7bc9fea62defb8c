"""One preprocessing for training, evaluation and serving: the same file becomes the same array on every path."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import numpy as np
import pytest

from model.card import new_card
from model.config import EQUALIZATIONS, PREPROCESSING, ModelConfig, fields_of, knob
from model.data import make_dataset, scan_folder
from model.features import _view_pixels
from model.images import read_grey
from model.preprocessing import (
    Preprocessing,
    crop_box,
    crop_to,
    locate,
    equalize,
    preprocessing_of,
    to_network_input,
    vgg_input,
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
    cropped = crop_to(grey, locate(grey, Preprocessing(64, crop=0.1)).box)
    assert cropped.shape == (grey.shape[0] - 2 * round(grey.shape[0] * 0.1),
                             grey.shape[1] - 2 * round(grey.shape[1] * 0.1))
    flat = equalize(grey, "global")
    assert abs(np.histogram(flat, 8, (0, 256))[0].std()) < np.histogram(grey, 8, (0, 256))[0].std()
    assert equalize(grey, "clahe").dtype == np.uint8 and not np.array_equal(equalize(grey, "clahe"), grey)
    plain, harmonized = (to_network_input(grey, Preprocessing(64, harmonize=h)) for h in (0, 32))
    assert plain.shape == harmonized.shape == (64, 64, 3) and not np.array_equal(plain, harmonized)


def test_the_numpy_vgg_input_is_what_keras_applications_gives():
    from keras.applications.vgg16 import preprocess_input

    rgb = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    np.testing.assert_allclose(vgg_input(rgb), preprocess_input(rgb.copy()), atol=1e-4)


def test_the_preprocessing_names_its_cache_entries_apart():
    keys = {Preprocessing(256, c, h, e).key for c, h, e in OPTIONS}
    assert len(keys) == len(OPTIONS)


def test_the_shipped_models_cache_key_keeps_its_spelling():
    """Features cached before the key was derived from the config's fields are found again under the same name."""
    config = ModelConfig(input_size=256, weights="none", harmonize=224, equalize="global", crop=0.05)
    assert preprocessing_of(config).key == "256px-crop0.05-harm224-eqglobal"


def another_value(knob: dataclasses.Field):
    """A valid value of a preprocessing field other than its default."""
    choices = knob.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != knob.default)
    return {float: 0.1, int: 64, bool: not knob.default, str: "0123456789ab"}[type(knob.default)]


@pytest.mark.parametrize("knob", fields_of(PREPROCESSING), ids=lambda knob: knob.name)
def test_changing_any_one_preprocessing_field_changes_the_cache_key(knob):
    base = ModelConfig(weights="none", input_size=32)
    changed = dataclasses.replace(base, **{knob.name: another_value(knob)})
    assert preprocessing_of(changed).key != preprocessing_of(base).key
    assert preprocessing_of(dataclasses.replace(base, input_size=64)).key != preprocessing_of(base).key


def test_a_new_preprocessing_field_of_the_config_is_part_of_the_key():
    @dataclasses.dataclass(frozen=True)
    class WithGamma(ModelConfig):
        gamma: float = knob(1.0, PREPROCESSING, "gamma correction exponent", card="gamma {:g}")

    made = dataclasses.make_dataclass("WithSharpen", [("sharpen", int, knob(0, PREPROCESSING, "unsharp mask px"))],
                                      bases=(ModelConfig,), frozen=True)
    plain, gamma, stronger = (preprocessing_of(c) for c in (
        ModelConfig(weights="none", input_size=32), WithGamma(weights="none", input_size=32),
        WithGamma(weights="none", input_size=32, gamma=2.0)))
    assert stronger.gamma == 2.0 and len({plain.key, gamma.key, stronger.key}) == 3
    assert preprocessing_of(made(weights="none", sharpen=3)).key != preprocessing_of(made(weights="none")).key


def test_the_crop_box_is_the_region_cropping_keeps():
    grey = np.arange(100 * 60, dtype="uint32").reshape(100, 60).astype("uint8")
    top, left, bottom, right = crop_box(grey.shape, 0.1)
    assert (top, left, bottom, right) == (10, 6, 90, 54)
    np.testing.assert_array_equal(crop_to(grey, crop_box(grey.shape, 0.1)), grey[10:90, 6:54])
    assert crop_box(grey.shape, 0.0) == (0, 0, 100, 60)
