import numpy as np
import pytest
from PIL import Image

from model.augment import augment


@pytest.fixture
def grey(fixture_dir) -> np.ndarray:
    """A real, non-square X-ray (111 x 128)."""
    return np.asarray(Image.open(fixture_dir / "covid" / "cohen__covid-19-pneumonia-22-day1-pa.png").convert("L"))


def test_keeps_shape_and_dtype(grey):
    out = augment(grey, np.random.default_rng(0))
    assert out.shape == grey.shape == (128, 111)
    assert out.dtype == np.uint8


def test_changes_the_image_but_keeps_it_recognisable(grey):
    for seed in range(5):
        out = augment(grey, np.random.default_rng(seed))
        assert np.abs(out.astype(int) - grey).mean() > 2
        assert np.corrcoef(out.ravel(), grey.ravel())[0, 1] > 0.6


def test_deterministic_per_seed(grey):
    np.testing.assert_array_equal(augment(grey, np.random.default_rng(1)), augment(grey, np.random.default_rng(1)))
    assert not np.array_equal(augment(grey, np.random.default_rng(1)), augment(grey, np.random.default_rng(2)))


def test_successive_calls_differ(grey):
    rng = np.random.default_rng(0)
    assert not np.array_equal(augment(grey, rng), augment(grey, rng))


def test_does_not_modify_input(grey):
    before = grey.copy()
    augment(grey, np.random.default_rng(0))
    np.testing.assert_array_equal(grey, before)


@pytest.mark.parametrize("bad", [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.float32), np.zeros(64, np.uint8)])
def test_rejects_non_grey_uint8(bad):
    with pytest.raises(ValueError, match="2-D uint8"):
        augment(bad, np.random.default_rng(0))
