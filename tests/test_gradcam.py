"""Grad-CAM looks where the head was fit to look, and the overlay shows it where the network looked (after cropping)."""

from __future__ import annotations

import numpy as np
import pytest

from model.card import new_card
from model.config import ModelConfig
from model.features import Features
from model.preprocessing import crop_box, preprocessing_of, to_network_input
from model.serving.overlay import overlay
from model.serving.predictor import predictor_from_model

SIDE, PATCH, CROP = 100, 20, 0.2
CONFIG = ModelConfig(input_size=64, weights="none", crop=CROP, feature_layers=("block3",), pooling="avg",
                     head="logistic", optimizer="adam", learning_rate=0.05, epochs=60, batch_size=16)
"""A shallow random base (block 3: small receptive fields) and a logistic head: the cue is where the patch is."""


def film(rng: np.random.Generator, patch_at: tuple[int, int] | None) -> np.ndarray:
    """A noisy grey square, with a bright PATCH x PATCH square whose top-left corner is `patch_at`."""
    grey = rng.normal(90, 20, (SIDE, SIDE)).clip(0, 255)
    if patch_at:
        grey[patch_at[0]: patch_at[0] + PATCH, patch_at[1]: patch_at[1] + PATCH] = 250
    return grey.astype("uint8")


@pytest.fixture(scope="module")
def predictor():
    """A model whose head was fit to call a film positive when it has the bright patch, anywhere the crop keeps."""
    from model.architecture import assemble, build_config_base
    from model.training.head import train_head

    rng = np.random.default_rng(0)
    inside = SIDE - 2 * round(SIDE * CROP) - PATCH
    greys = [film(rng, tuple(round(SIDE * CROP) + rng.integers(0, inside, 2)) if i % 2 else None) for i in range(40)]
    y = np.array([i % 2 for i in range(40)], "float32")
    base = build_config_base(CONFIG)
    x = base.predict(np.stack([to_network_input(g, preprocessing_of(CONFIG)) for g in greys]), verbose=0)
    head, _ = train_head(x.shape[1:], Features(x[:, None], y, [None] * len(y)), None, CONFIG)
    return predictor_from_model(assemble(base, head), new_card(CONFIG, 0.5, "fixed at 0.5 for tests", {}, {}))


def inside_and_outside(values: np.ndarray, region: tuple[int, int, int, int]) -> tuple[float, float]:
    """The mean of `values` (2-D) inside the (top, left, bottom, right) region and outside it."""
    mask = np.zeros(values.shape, bool)
    mask[region[0]: region[2], region[1]: region[3]] = True
    return float(values[mask].mean()), float(values[~mask].mean())


@pytest.mark.parametrize("patch_at", [(25, 25), (55, 52)])
def test_grad_cam_is_hottest_on_the_patch_the_head_was_fit_to(predictor, patch_at):
    prediction = predictor.predict(film(np.random.default_rng(1), patch_at))
    assert prediction.positive
    top, left, _, _ = prediction.crop_box
    seen = SIDE - 2 * top
    scale = prediction.heatmap.shape[0] / seen
    region = [round((patch_at[0] - top) * scale), round((patch_at[1] - left) * scale)]
    region += [region[0] + round(PATCH * scale), region[1] + round(PATCH * scale)]
    on_patch, elsewhere = inside_and_outside(prediction.heatmap, tuple(region))
    assert on_patch > elsewhere


@pytest.mark.parametrize("patch_at", [(25, 25), (55, 52)])
def test_the_overlay_lands_on_the_patch_of_a_cropped_model(predictor, patch_at):
    prediction = predictor.predict(film(np.random.default_rng(2), patch_at))
    assert prediction.crop_box == (20, 20, 80, 80)
    picture = overlay(prediction.grey, prediction.heatmap, prediction.crop_box).astype(int)
    hot = picture[..., 0] - picture[..., 2]
    on_patch, elsewhere = inside_and_outside(hot, (*patch_at, patch_at[0] + PATCH, patch_at[1] + PATCH))
    assert on_patch > elsewhere
    assert np.argmax(hot) // SIDE in range(*prediction.crop_box[::2])


def test_the_overlay_covers_only_the_box_and_keeps_the_rest_plain_grey():
    grey = np.full((200, 100), 120, "uint8")
    heat = np.zeros((8, 8), "float32")
    heat[:4, :4] = 1.0
    picture = overlay(grey, heat, crop_box(grey.shape, 0.1))
    top, left, bottom, right = 20, 10, 180, 90
    outside = np.ones(grey.shape, bool)
    outside[top:bottom, left:right] = False
    assert (picture[outside] == 120).all()
    hot = picture[..., 0].astype(int) - picture[..., 2]
    assert hot[top: top + 60, left: left + 30].min() > 0 > hot[bottom - 60: bottom, right - 30: right].max()


def test_a_box_of_the_full_upload_is_scaled_onto_its_preview():
    heat = np.ones((4, 4), "float32")
    preview = np.full((50, 25), 120, "uint8")
    picture = overlay(preview, heat, (20, 12, 180, 88), box_shape=(200, 100))
    tinted = (picture != 120).any(axis=2)
    rows, cols = np.flatnonzero(tinted.any(axis=1)), np.flatnonzero(tinted.any(axis=0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (5, 45, 3, 22)

