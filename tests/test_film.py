"""The film finder on frames with known boxes: borders of any grey on some or all sides, screens, nested borders,
thin frames, text strips, JPEG noise; films dark at their edges and films without a frame keep their whole box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from model.film import SMALLEST, Box, find_film
from model.images import EXTENSIONS, read_grey
from tests.films import jpeg, pad, synthetic_film

ROOT = Path(__file__).resolve().parents[1]
REAL_FILMS = sorted(p for folder in (ROOT / "tests" / "fixtures" / "xrays", ROOT / "examples")
                    for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
FILM = synthetic_film(150, 120)
LEVELS = (0, 255, 128, 37)
SIDES = {  # (top, left, bottom, right) widths of a border
    "all": (30, 30, 30, 30),
    "top": (17, 0, 0, 0),
    "left and right": (0, 23, 0, 41),
    "bottom and left": (0, 12, 26, 0),
    "uneven": (13, 11, 29, 7),
}


def placed(film: np.ndarray, top: int, left: int) -> Box:
    return top, left, top + film.shape[0], left + film.shape[1]


def assert_near(found, expected, pixels: int) -> None:
    assert np.abs(np.subtract(found, expected)).max() <= pixels, f"found {found}, the film is at {expected}"


def test_a_film_without_a_frame_keeps_the_whole_image():
    assert find_film(FILM) == (0, 0, *FILM.shape)


@pytest.mark.parametrize("noise", [8.0, 12.0])
@pytest.mark.parametrize("edge", [0, 8, 20])
def test_a_film_dark_at_its_edges_keeps_its_whole_box_framed_or_not(edge, noise):
    film = synthetic_film(140, 110, seed=3, edge=edge, noise=noise)
    assert find_film(film) == (0, 0, *film.shape)
    assert find_film(pad(film, 25, 25, 25, 25, 0)) == placed(film, 25, 25)


@pytest.mark.parametrize("sides", SIDES)
@pytest.mark.parametrize("level", LEVELS)
def test_a_border_of_any_grey_on_any_sides_is_trimmed_exactly(level, sides):
    top, left, bottom, right = SIDES[sides]
    assert find_film(pad(FILM, top, left, bottom, right, level)) == placed(FILM, top, left)


@pytest.mark.parametrize("level", LEVELS)
def test_a_jpeg_of_a_framed_film_is_trimmed_within_two_pixels(level):
    framed = jpeg(pad(FILM, 30, 21, 36, 27, level), quality=75)
    assert_near(find_film(framed), placed(FILM, 30, 21), 2)


@pytest.mark.parametrize(("screen", "film_size"), [((1080, 1920), (1080, 864)), ((1024, 1280), (960, 1280))])
@pytest.mark.parametrize("level", [0, 128])
def test_a_film_pasted_into_a_screen_is_found(screen, film_size, level):
    film = synthetic_film(*film_size, seed=1)
    top, left = (screen[0] - film_size[0]) // 2, (screen[1] - film_size[1]) // 2
    shot = np.full(screen, level, np.uint8)
    shot[top : top + film_size[0], left : left + film_size[1]] = film
    assert find_film(shot) == placed(film, top, left)
    assert_near(find_film(jpeg(shot)), placed(film, top, left), 2)


def test_nested_borders_of_different_greys_are_all_trimmed():
    framed = pad(pad(pad(FILM, 2, 2, 2, 2, 200), 15, 9, 15, 9, 37), 20, 0, 11, 25, 0)
    assert find_film(framed) == placed(FILM, 37, 11)


@pytest.mark.parametrize("line", [1, 2, 3])
def test_a_thin_frame_line_then_more_border_is_trimmed(line):
    framed = pad(pad(FILM, line, line, line, line, 255), 25, 25, 25, 25, 0)
    assert find_film(framed) == placed(FILM, 25 + line, 25 + line)
    assert_near(find_film(jpeg(framed)), placed(FILM, 25 + line, 25 + line), 2)


def test_a_border_of_the_films_own_edge_grey_stops_where_the_texture_begins():
    film = synthetic_film(150, 120, edge=20)
    assert find_film(pad(film, 20, 20, 20, 20, 20)) == placed(film, 20, 20)


@pytest.mark.parametrize("level", [30, 220])
def test_a_films_smooth_faint_edge_is_not_a_band(level):
    """A washed-out or dark bottom with faint structure and little noise (as on downsampled films) is film: the
    band's grey must not drift with it (half a grey level a line here), so at most a few lines go."""
    film = synthetic_film(150, 120).astype(float)
    ramp = np.linspace(level + (20 if level < 128 else -20), level, 40)
    film[-40:] = ramp[:, None] + 3 * np.sin(np.arange(120) / 9) + np.random.default_rng(4).normal(0, 1.5, (40, 120))
    film = np.clip(np.round(film), 0, 255).astype(np.uint8)
    for framed, at in ((film, 0), (pad(film, 20, 20, 20, 20, 128), 20)):
        top, left, bottom, right = find_film(framed)
        assert (top, left, right) == (at, at, at + 120) and at + 150 - 6 <= bottom <= at + 150


def test_a_band_stops_at_the_films_first_textured_line():
    """A uniform stripe inside the film, a few lines past its edge, is not part of the border."""
    film = FILM.copy()
    film[3:8] = 0
    assert find_film(pad(film, 30, 0, 0, 0, 0)) == placed(film, 30, 0)


def test_a_band_ends_where_its_lines_stop_being_nearly_uniform():
    """Film lines dark over more than half their width (a collimated film) do not join the border, even when a
    uniform line lies past them."""
    film = FILM.copy()
    film[:30, :35] = film[:30, -35:] = np.random.default_rng(5).integers(0, 8, (30, 35))
    film[30:32] = 0
    assert find_film(pad(film, 20, 0, 0, 0, 0)) == placed(film, 20, 0)


def with_text(framed: np.ndarray) -> np.ndarray:
    """Markers and a text line in white on the border, as viewers and scanners burn them in."""
    image = Image.fromarray(framed)
    draw = ImageDraw.Draw(image)
    draw.text((4, 6), "R", fill=255)
    draw.text((framed.shape[1] - 60, 6), "PORTABLE", fill=255)
    draw.text((6, framed.shape[0] - 24), "W:2108 L:2723 AP", fill=255)
    return np.asarray(image)


@pytest.mark.parametrize("level", [0, 128])
def test_a_border_carrying_a_little_text_is_trimmed(level):
    framed = with_text(pad(FILM, 30, 20, 32, 20, level))
    assert (framed[:30] > 200).any() and (framed[-32:] > 200).any()
    assert find_film(framed) == placed(FILM, 30, 20)
    assert_near(find_film(jpeg(framed)), placed(FILM, 30, 20), 2)


def test_a_real_film_is_found_in_any_frame(fixture_dir):
    film = read_grey(fixture_dir / "normal" / "rdb__Normal-10037.png")
    assert find_film(film) == (0, 0, *film.shape)
    for level in LEVELS:
        for top, left, bottom, right in SIDES.values():
            framed = pad(film, top, left, bottom, right, level)
            assert find_film(framed) == placed(film, top, left), (level, (top, left, bottom, right))
            assert_near(find_film(jpeg(framed)), placed(film, top, left), 2)


@pytest.mark.parametrize("path", REAL_FILMS, ids=lambda p: p.name)
def test_what_is_cut_off_a_real_film_is_uniform(path):
    """Most real films have no frame and keep their whole box; some carry black bars, which are cut."""
    grey = read_grey(path)
    top, left, bottom, right = find_film(grey)
    assert bottom - top >= 0.75 * grey.shape[0] and right - left >= 0.75 * grey.shape[1]
    for strip in (grey[:top], grey[bottom:], grey[top:bottom, :left], grey[top:bottom, right:]):
        if strip.size:
            assert (np.abs(strip.astype(int) - np.median(strip)) <= 10).mean() >= 0.95


def test_most_real_films_have_no_frame():
    whole = [p.name for p in REAL_FILMS if find_film(read_grey(p)) == (0, 0, *read_grey(p).shape)]
    assert len(whole) >= 0.7 * len(REAL_FILMS)


def test_a_box_too_small_to_be_a_film_is_not_believed():
    framed = pad(synthetic_film(30, 30), 100, 100, 100, 100, 0)
    assert 30 / framed.shape[0] < SMALLEST
    assert find_film(framed) == (0, 0, *framed.shape)
    blank = np.full((60, 80), 90, np.uint8)
    assert find_film(blank) == (0, 0, 60, 80)


def test_the_smallest_images_are_answered():
    rng = np.random.default_rng(0)
    assert find_film(rng.integers(0, 256, (8, 8), dtype=np.uint8)) == (0, 0, 8, 8)
    assert find_film(np.zeros((8, 8), np.uint8)) == (0, 0, 8, 8)


def test_only_2d_uint8_images_are_taken():
    with pytest.raises(ValueError):
        find_film(FILM.astype(np.float32))
    with pytest.raises(ValueError):
        find_film(np.stack([FILM] * 3, axis=-1))
