import io
from pathlib import Path

import numpy as np
import pytest
from badfiles import (
    RESCALE_INTERCEPT,
    RESCALE_SLOPE,
    WINDOW_CENTER,
    WINDOW_WIDTH,
    make_bad_files,
    make_valid_unusual_files,
    pattern,
    png_bytes,
)
from PIL import Image

from model.images import ImageError, file_sha256, load_bytes, read_grey
from model.preprocessing import resize_grey, to_network_input

FIXTURE_XRAYS = Path(__file__).parent / "fixtures" / "xrays"
CAFFE_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype="float32")


def load_image(source, size: int) -> np.ndarray:
    """One file to one network input of size x size, as serving makes it."""
    return to_network_input(read_grey(source), size)

EXPECTED_MESSAGES = {
    "empty": "empty (0 bytes)",
    "text_as_png": "not an image",
    "html_as_jpg": "not an image",
    "pdf": "not an image",
    "truncated_png": "truncated or corrupt",
    "truncated_jpeg": "truncated or corrupt",
    "corrupt_png_idat": "truncated or corrupt",
    "bomb_png": "too large to decode safely",
    "too_many_pixels_png": "8000x8000 (64 megapixels), over the 40 megapixel limit",
    "tiny_1x1": "1x1 pixels; a chest X-ray needs at least 64 px",
    "thin_40x4000": "40x4000 pixels; a chest X-ray needs at least 64 px",
    "blank": "blank (every pixel is about 17)",
    "animated_gif": "holds 2 frames (animated or multi-page)",
    "multipage_tiff": "holds 2 frames (animated or multi-page)",
    "dicom_no_pixels": "DICOM file has no pixel data",
    "dicom_multiframe": "DICOM file holds 3 frames",
    "dicom_truncated": "DICOM file has no pixel data",
    "dicom_cut_in_pixels": "DICOM pixel data cannot be decoded (Explicit VR Little Endian)",
    "dicom_jpeg2000_junk": "DICOM pixel data cannot be decoded (JPEG 2000",
    "oversized": "over the 50 MiB limit",
    "dicom_deflated_huge": "decoded pixel data would take 227 MiB (6300x6300, 3 sample(s) of 2 byte(s), 1 frame(s)), "
                           "over the 128 MiB limit",
    "dicom_frames_not_a_number": "DICOM attribute NumberOfFrames is 'ab', not a whole number",
    "dicom_window_width_zero": "DICOM attribute WindowWidth is 0; a display window must be at least 1 wide",
    "dicom_one_bit": "DICOM attribute BitsAllocated is 1; only 8, 16, 32, 64 bits per sample are supported",
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, Path]:
    return make_valid_unusual_files(tmp_path_factory.mktemp("valid"))


def test_generator_writes_every_kind(bad_files, valid_files):
    assert set(bad_files) == set(EXPECTED_MESSAGES)
    assert len(bad_files) >= 17 and len(valid_files) >= 14
    assert all(p.is_file() for p in [*bad_files.values(), *valid_files.values()])
    assert bad_files["bomb_png"].stat().st_size < 10_000


@pytest.mark.parametrize("kind", sorted(EXPECTED_MESSAGES))
def test_bad_file_raises_image_error_saying_why(bad_files, kind):
    with pytest.raises(ImageError) as raised:
        load_image(bad_files[kind], 64)
    assert EXPECTED_MESSAGES[kind] in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("kind", sorted(EXPECTED_MESSAGES))
def test_bad_bytes_raise_the_same_error_as_the_path(bad_files, kind):
    with pytest.raises(ImageError) as from_path:
        read_grey(bad_files[kind])
    with pytest.raises(ImageError) as from_bytes:
        read_grey(bad_files[kind].read_bytes())
    assert str(from_bytes.value) == str(from_path.value)


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom"])
def test_any_truncation_gives_image_error_or_an_image(valid_files, kind):
    name = {"png": "grey8_png", "jpeg": "rgb_jpeg", "dicom": "dicom_mono2_window"}[kind]
    data = valid_files[name].read_bytes()
    for n in np.unique(np.linspace(1, len(data) - 1, 60).astype(int)):
        try:
            grey = read_grey(data[:n])
        except ImageError:
            continue
        assert grey.dtype == np.uint8 and grey.ndim == 2


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="nothere.png: no such file"):
        read_grey(tmp_path / "nothere.png")


def _assert_network_input(x: np.ndarray, grey: np.ndarray, size: int) -> None:
    """VGG-16 caffe preprocessing of a grey image: BGR channels equal to grey minus each channel's mean."""
    assert x.dtype == np.float32 and x.shape == (size, size, 3)
    expected = resize_grey(grey, size)[:, :, None].astype("float32") - CAFFE_BGR_MEANS
    np.testing.assert_allclose(x, expected, atol=1e-4)


VALID_KINDS = [
    "grey8_png", "grey16_png", "rgb_jpeg", "rgba_png", "palette_png", "palette_transparent_png", "cmyk_jpeg",
    "exif_rotated_jpeg", "dicom_mono2_window", "dicom_mono1", "dicom_rescale", "big_jpeg", "tiff", "bmp", "mpo_jpeg",
]


@pytest.mark.parametrize("kind", VALID_KINDS)
def test_valid_unusual_file_loads_to_network_input(valid_files, kind):
    grey = read_grey(valid_files[kind])
    assert grey.dtype == np.uint8 and grey.ndim == 2
    assert int(grey.max()) - int(grey.min()) > 150
    x = load_image(valid_files[kind], 64)
    _assert_network_input(x, grey, 64)
    np.testing.assert_array_equal(load_image(valid_files[kind].read_bytes(), 64), x)
    assert file_sha256(valid_files[kind]) == file_sha256(valid_files[kind].read_bytes())


@pytest.mark.parametrize(
    ("kind", "tolerance"),
    [("grey8_png", 0), ("tiff", 0), ("bmp", 0), ("rgba_png", 0), ("rgb_jpeg", 2), ("cmyk_jpeg", 2),
     ("mpo_jpeg", 2), ("palette_png", 4), ("exif_rotated_jpeg", 2)],
)
def test_pixels_match_the_picture_upright_and_not_inverted(valid_files, kind, tolerance):
    grey = read_grey(valid_files[kind]).astype(int)
    picture = pattern(128, 96).astype(int)
    assert grey.shape == picture.shape
    assert np.abs(grey - picture).mean() <= tolerance


def test_exif_orientation_is_applied(valid_files):
    with Image.open(valid_files["exif_rotated_jpeg"]) as stored:
        assert stored.size == (128, 96) and stored.getexif()[0x0112] == 6
    grey = read_grey(valid_files["exif_rotated_jpeg"]).astype(int)
    assert grey.shape == (128, 96)
    picture = pattern(128, 96).astype(int)
    assert np.abs(grey - picture).mean() < np.abs(grey - picture[::-1, ::-1]).mean() / 10


def test_sixteen_bit_png_keeps_its_full_range(valid_files):
    wide = pattern(128, 96, 65535).astype("float64")
    expected = np.round(wide * 255 / wide.max())
    np.testing.assert_allclose(read_grey(valid_files["grey16_png"]), expected, atol=1)


def test_palette_transparency_is_composited_on_black(valid_files):
    with Image.open(valid_files["palette_transparent_png"]) as image:
        transparent = np.asarray(image) == 0
    assert transparent.any()
    assert (read_grey(valid_files["palette_transparent_png"])[transparent] == 0).all()


def test_dicom_window_is_applied(valid_files):
    x = pattern(128, 96, 4095).astype("float64")
    linear = (x - (WINDOW_CENTER - 0.5)) / (WINDOW_WIDTH - 1) + 0.5
    expected = np.round(np.clip(linear, 0, 1) * 255)
    grey = read_grey(valid_files["dicom_mono2_window"])
    assert (grey == 0).any() and (grey == 255).any()
    np.testing.assert_allclose(grey, expected, atol=1)


def test_monochrome1_is_inverted_relative_to_monochrome2(valid_files):
    mono1 = read_grey(valid_files["dicom_mono1"]).astype(int)
    mono2 = read_grey(valid_files["dicom_mono2_window"]).astype(int)
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_dicom_rescale_without_window_keeps_orientation_and_contrast(valid_files):
    assert RESCALE_SLOPE > 0 and RESCALE_INTERCEPT != 0
    grey = read_grey(valid_files["dicom_rescale"]).astype("float64")
    assert grey.min() == 0 and grey.max() == 255
    assert np.corrcoef(grey.ravel(), pattern(128, 96).ravel())[0, 1] > 0.99


def test_big_image_loads_at_native_size(valid_files):
    assert read_grey(valid_files["big_jpeg"]).shape == (4000, 5000)


def test_bytes_and_path_give_the_same_input(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(Image.fromarray(pattern(100, 80))))
    data = load_bytes(path)
    for source in (data, bytearray(data), memoryview(data), str(path)):
        np.testing.assert_array_equal(load_image(source, 32), load_image(path, 32))


FIXTURES = sorted(p for p in FIXTURE_XRAYS.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


@pytest.mark.parametrize("path", FIXTURES or [None], ids=lambda p: p.name if p else "no-fixtures")
def test_real_fixture_xrays_load(path):
    if path is None:
        pytest.skip(f"no fixture X-rays in {FIXTURE_XRAYS} (rebuild with tests/fixtures/build_fixtures.py)")
    grey = read_grey(path)
    assert grey.dtype == np.uint8 and grey.ndim == 2 and min(grey.shape) >= 64
    assert grey.std() > 10
    _assert_network_input(load_image(path, 64), grey, 64)


def test_pillow_image_over_the_decoded_size_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import model.images

    rgb16 = Image.new("RGBA", (2000, 2000))
    monkeypatch.setattr(model.images, "MAX_DECODED_BYTES", 2000 * 2000 * 4 - 1)
    with pytest.raises(ImageError, match=r"2000x2000, 1 sample\(s\) of 4 byte\(s\)"):
        read_grey(png_bytes(rgb16))


@pytest.mark.parametrize(("kind", "mode"), [("grey8_png", "L"), ("rgb_jpeg", "L"), ("grey16_png", "I;16"),
                                           ("dicom_mono2_window", "I;16"), ("dicom_mono1", "I;16")])
def test_lossless_png_is_the_decoded_grey_at_its_depth(valid_files, kind, mode):
    from model.images import lossless_png

    png = lossless_png(valid_files[kind])
    with Image.open(io.BytesIO(png)) as stored:
        assert stored.format == "PNG" and stored.mode == mode
        np.testing.assert_array_equal(read_grey(png), read_grey(valid_files[kind]))


def test_lossless_png_drops_bytes_appended_to_the_upload(valid_files):
    from model.images import lossless_png

    data = valid_files["grey8_png"].read_bytes()
    assert lossless_png(data + b"\0junk" * 100_000) == lossless_png(data)
    with pytest.raises(ImageError, match="not an image"):
        lossless_png(b"<html></html>")
