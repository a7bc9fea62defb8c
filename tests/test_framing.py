"""The framings: each named one's geometry, the film finder recovering the film they frame, and random framings
for training views (deterministic for a seed, never inverted, sane sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from model.film import find_film
from model.framing import (
    FRAMINGS,
    SCREENS,
    border,
    centre_crop,
    invert,
    letterbox,
    letterbox_box,
    random_framing,
)
from model.images import read_grey
from tests.films import synthetic_film

FILM = synthetic_film(150, 120)
NAMES = ["black border 10%", "black border 20%", "white border 10%", "grey border 10%", "screen 1920x1080",
         "screen 1280x1024", "crop 90%", "inverted"]
WHERE = {  # where each named framing puts a film of `shape`, and the grey around it
    "black border 10%": lambda shape: (border_box(shape, 0.10), 0),
    "black border 20%": lambda shape: (border_box(shape, 0.20), 0),
    "white border 10%": lambda shape: (border_box(shape, 0.10), 255),
    "grey border 10%": lambda shape: (border_box(shape, 0.10), 128),
    "screen 1920x1080": lambda shape: (letterbox_box(shape, 1920, 1080), 0),
    "screen 1280x1024": lambda shape: (letterbox_box(shape, 1280, 1024), 0),
}


def border_box(shape, fraction):
    width = round(fraction * max(shape))
    return width, width, width + shape[0], width + shape[1]


def test_the_named_framings_are_the_benchmarks():
    assert list(FRAMINGS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_each_named_framing_is_deterministic_uint8_grey(name):
    framed = FRAMINGS[name](FILM)
    assert framed.dtype == np.uint8 and framed.ndim == 2
    np.testing.assert_array_equal(framed, FRAMINGS[name](FILM.copy()))


@pytest.mark.parametrize(("fraction", "level"), [(0.1, 0), (0.2, 255), (0.25, 37)])
def test_a_border_is_a_fraction_of_the_long_side_on_every_side(fraction, level):
    framed = border(FILM, fraction, level)
    width = round(fraction * 150)
    assert framed.shape == (150 + 2 * width, 120 + 2 * width)
    np.testing.assert_array_equal(framed[width : width + 150, width : width + 120], FILM)
    inside = np.zeros(framed.shape, bool)
    inside[width : width + 150, width : width + 120] = True
    assert (framed[~inside] == level).all()


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1280, 1024), (200, 400)])
@pytest.mark.parametrize("shape", [(150, 120), (90, 300), (3000, 2400)])
def test_letterbox_scales_the_film_to_fit_the_screen_and_centres_it(width, height, shape):
    film = np.full(shape, 200, np.uint8)
    framed = letterbox(film, width, height, level=9)
    top, left, bottom, right = letterbox_box(shape, width, height)
    assert framed.shape == (height, width)
    assert bottom - top == height or right - left == width
    assert abs((right - left) / (bottom - top) - shape[1] / shape[0]) < 0.02 * shape[1] / shape[0] + 0.02
    assert abs(top - (height - bottom)) <= 1 and abs(left - (width - right)) <= 1
    assert (framed[top:bottom, left:right] == 200).all()
    assert (framed == 9).sum() == width * height - (bottom - top) * (right - left)


def test_centre_crop_keeps_the_middle_of_each_side():
    cropped = centre_crop(FILM, 0.9)
    assert cropped.shape == (135, 108)
    np.testing.assert_array_equal(cropped, FILM[8:143, 6:114])


def test_invert_is_the_negative_and_its_own_inverse():
    assert (invert(FILM).astype(int) + FILM == 255).all()
    np.testing.assert_array_equal(invert(invert(FILM)), FILM)
    np.testing.assert_array_equal(FRAMINGS["inverted"](FILM), invert(FILM))


@pytest.mark.parametrize("name", WHERE)
def test_the_film_finder_recovers_the_film_each_framing_frames(name, fixture_dir):
    real = read_grey(fixture_dir / "normal" / "rdb__Normal-10037.png")
    for film in (FILM, real):
        expected, level = WHERE[name](film.shape)
        framed = FRAMINGS[name](film)
        assert (framed[: expected[0]] == level).all() and (framed[:, : expected[1]] == level).all()
        found = find_film(framed)
        assert np.abs(np.subtract(found, expected)).max() <= 2, (name, found, expected)


def test_random_framing_is_deterministic_for_a_seed():
    for seed in range(20):
        first = random_framing(FILM, np.random.default_rng(seed))
        np.testing.assert_array_equal(first, random_framing(FILM, np.random.default_rng(seed)))
    different = [random_framing(FILM, np.random.default_rng(seed)) for seed in (1, 2, 3, 4)]
    assert len({(f.shape, f.tobytes()) for f in different}) > 1


def gradient_film() -> np.ndarray:
    """A film dark at the top and bright at the bottom, so an inversion would be plain to see."""
    return np.clip(synthetic_film(150, 120, edge=60) // 4 + np.linspace(30, 190, 150)[:, None], 0, 255).astype(np.uint8)


def test_random_framings_frame_in_every_way_but_never_invert():
    film, kinds = gradient_film(), set()
    for seed in range(200):
        framed = random_framing(film, np.random.default_rng(seed))
        assert framed.dtype == np.uint8 and framed.ndim == 2
        assert min(framed.shape) >= 0.75 * min(film.shape)
        assert max(framed.shape) <= max(max(w for w, _ in SCREENS), 1.6 * max(film.shape) + 20)
        if framed.shape == film.shape and np.array_equal(framed, film):
            kinds.add("untouched")
            continue
        kinds.add("screen" if framed.shape[::-1] in SCREENS else
                  "smaller" if framed.size < film.size else "larger")
        top, left, bottom, right = find_film(framed)
        quarter = (bottom - top) // 4
        inside = framed[top:bottom, left + (right - left) // 3 : right - (right - left) // 3]
        assert inside[:quarter].mean() < inside[-quarter:].mean(), f"seed {seed} looks inverted"
    assert kinds == {"untouched", "screen", "smaller", "larger"}


def test_about_a_quarter_of_random_framings_leave_the_film_untouched():
    untouched = sum(np.array_equal(random_framing(FILM, np.random.default_rng(seed)), FILM) for seed in range(400))
    assert 0.15 * 400 <= untouched <= 0.35 * 400
