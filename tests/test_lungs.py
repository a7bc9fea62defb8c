"""The lung localiser: the two-lung rule and its box on synthetic maps, loading and versions, and the shipped
localiser on the example films (both lungs found, the same box under a border, inverted films recognised)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.framing import border, invert
from model.images import read_grey
from model.lungs import (
    MARGIN,
    LocaliserError,
    find_lungs,
    find_lungs_many,
    load_localiser,
    lung_maps,
    lungs_of_map,
    weights_version,
)
from model.preprocessing import DEFAULT_LOCALISER

EXAMPLES = sorted(p for p in (Path(__file__).parents[1] / "examples").iterdir() if p.suffix != ".md")
SIZE = 128


def blobs(*boxes: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    """A probability map with an ellipse of 0.9 filling each (top, left, bottom, right) box."""
    rows, cols = np.mgrid[:size, :size] + 0.5
    prob = np.full((size, size), 0.05, "float32")
    for top, left, bottom, right in boxes:
        cy, cx, ry, rx = (top + bottom) / 2, (left + right) / 2, (bottom - top) / 2, (right - left) / 2
        prob[((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1] = 0.9
    return prob


def iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_two_lungs_side_by_side_give_their_box_with_a_margin():
    lungs = lungs_of_map(blobs((20, 24, 104, 58), (20, 70, 108, 104)), (512, 384))
    assert lungs.found and lungs.reason == "" and not lungs.inverted
    top, left, bottom, right = 20 * 4, 24 * 3, 108 * 4, 104 * 3
    dy, dx = MARGIN * (bottom - top), MARGIN * (right - left)
    assert lungs.box[0] == pytest.approx(top - dy, abs=4) and lungs.box[2] == pytest.approx(bottom + dy, abs=4)
    assert lungs.box[1] == pytest.approx(left - dx, abs=3) and lungs.box[3] == pytest.approx(right + dx, abs=3)
    assert 0.2 < lungs.area < 0.5


def test_the_margin_stops_at_the_image_edge():
    lungs = lungs_of_map(blobs((0, 0, 128, 60), (0, 68, 128, 128)), (300, 200))
    assert lungs.found and lungs.box == (0, 0, 300, 200)


def test_lungs_joined_behind_the_heart_count_when_a_valley_parts_them():
    joined = blobs((20, 20, 104, 62), (20, 66, 104, 108))
    joined[80:100, 40:90] = 0.9
    lungs = lungs_of_map(joined, (256, 256))
    assert lungs.found, lungs.reason
    assert lungs.box[1] < 20 * 2 and lungs.box[3] > 108 * 2


@pytest.mark.parametrize(("prob", "why"), [
    (blobs((5, 90, 40, 120)), "one region in a corner"),
    (np.zeros((SIZE, SIZE), "float32"), "an empty map"),
    (blobs((16, 20, 112, 108)), "one wide region without a valley (a lateral view)"),
    (blobs((10, 30, 60, 90), (66, 30, 118, 90)), "two regions one above the other"),
    (blobs(*[(r, c, r + 10, c + 10) for r in range(10, 110, 25) for c in range(10, 110, 25)]), "scattered specks"),
    (blobs((30, 40, 60, 60), (30, 68, 34, 72)), "a second region far too small for a lung"),
    (np.full((SIZE, SIZE), 0.95, "float32"), "everything is lung"),
])
def test_maps_that_are_not_two_lungs_fall_back_to_the_whole_image(prob, why):
    lungs = lungs_of_map(prob, (400, 300))
    assert not lungs.found, why
    assert lungs.box == (0, 0, 400, 300) and lungs.reason and "\n" not in lungs.reason


def test_a_missing_or_corrupt_localiser_is_one_line(tmp_path):
    with pytest.raises(LocaliserError, match="missing") as missing:
        load_localiser(tmp_path / "lungs.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a keras file at all")
    with pytest.raises(LocaliserError) as broken:
        load_localiser(corrupt)
    cut = tmp_path / "cut.keras"
    cut.write_bytes(DEFAULT_LOCALISER.read_bytes()[:4000])
    with pytest.raises(LocaliserError) as short:
        load_localiser(cut)
    for error in (missing, broken, short):
        assert "\n" not in str(error.value)


def test_a_keras_model_that_is_no_localiser_is_refused(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(LocaliserError, match="not a lung localiser"):
        load_localiser(tmp_path / "other.keras")


def test_the_version_names_the_weights(tmp_path):
    from model.training.lungs_fit import build_unet

    network = build_unet(size=16, base=2, levels=2)
    network.save(tmp_path / "a.keras")
    first, again = load_localiser(tmp_path / "a.keras"), load_localiser(tmp_path / "a.keras")
    assert first.version == again.version == weights_version(network) and first.size == 16
    weights = network.get_weights()
    weights[0] = weights[0] + 1e-3
    network.set_weights(weights)
    assert weights_version(network) != first.version


@pytest.fixture(scope="module")
def shipped():
    return load_localiser(DEFAULT_LOCALISER)


@pytest.fixture(scope="module")
def examples():
    return [read_grey(path) for path in EXAMPLES]


def test_the_shipped_localiser_is_small(shipped):
    assert DEFAULT_LOCALISER.stat().st_size < 2 * 2**20
    assert shipped.network.count_params() < 250_000


def test_lung_maps_are_probabilities_at_each_images_own_size(shipped, examples):
    maps = lung_maps(shipped, examples)
    for grey, prob in zip(examples, maps):
        assert prob.shape == grey.shape and prob.dtype == np.float32
        assert 0 <= prob.min() and prob.max() <= 1
        assert 0.1 < (prob >= 0.5).mean() < 0.7


def test_both_lungs_are_found_on_every_example_film(shipped, examples):
    found = find_lungs_many(shipped, examples)
    for path, grey, lungs in zip(EXAMPLES, examples, found):
        assert lungs.found and not lungs.inverted, (path.name, lungs.reason)
        assert lungs.box != (0, 0, *grey.shape) and 0.1 < lungs.area < 0.7
        assert lungs == find_lungs(shipped, grey)


def test_a_black_border_does_not_move_the_lungs(shipped, examples):
    for path, grey in zip(EXAMPLES, examples):
        width = int(round(0.2 * max(grey.shape)))
        framed = find_lungs(shipped, border(grey, 0.2, 0))
        plain = find_lungs(shipped, grey)
        assert framed.found, (path.name, framed.reason)
        back = tuple(side - width for side in framed.box)
        assert iou(back, plain.box) > 0.8, path.name


def test_an_inverted_film_is_recognised_and_the_original_is_not(shipped, examples):
    for path, grey, original, negative in zip(EXAMPLES, examples, find_lungs_many(shipped, examples),
                                              find_lungs_many(shipped, [invert(g) for g in examples])):
        assert not original.inverted, path.name
        assert negative.inverted and negative.found, (path.name, negative.reason)
        assert iou(negative.box, original.box) > 0.8, path.name
