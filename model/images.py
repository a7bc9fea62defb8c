"""Decode any X-ray file (PNG, JPEG, TIFF, DICOM, ...) to a grey image at its own size, or say clearly why not."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Source = Union[str, Path, bytes, bytearray, memoryview]


@dataclass(frozen=True)
class Format:
    """One kind of file we read: its name, file extensions and MIME types (decoding goes by content, not name)."""

    name: str
    extensions: tuple[str, ...]
    mime_types: tuple[str, ...]


FORMATS = (
    Format("PNG", (".png",), ("image/png",)),
    Format("JPEG", (".jpg", ".jpeg"), ("image/jpeg",)),
    Format("TIFF", (".tif", ".tiff"), ("image/tiff",)),
    Format("BMP", (".bmp",), ("image/bmp",)),
    Format("GIF", (".gif",), ("image/gif",)),
    Format("WebP", (".webp",), ("image/webp",)),
    Format("DICOM", (".dcm", ".dicom"), ("application/dicom",)),
)
EXTENSIONS = tuple(ext for f in FORMATS for ext in f.extensions)
FORMAT_NAMES = ", ".join(f.name for f in FORMATS)

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 64
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)


class ImageError(ValueError):
    """The file cannot be used as a chest X-ray; the message says why."""


def load_bytes(source: Source) -> bytes:
    """Read a path or pass bytes through, refusing missing, empty and oversized files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path.name or path}: no such file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(_too_big(size))
        data = path.read_bytes()
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_too_big(len(data)))
    return data


def file_sha256(source: Source) -> str:
    """Hex SHA-256 of the file's bytes: the identity of an image across uploads, caches and corrections."""
    return hashlib.sha256(load_bytes(source)).hexdigest()


def read_grey(source: Source) -> np.ndarray:
    """Decode a file to a 2-D uint8 grey image at its native size, upright, with DICOM LUTs applied."""
    data = load_bytes(source)
    grey = _decode_dicom(data) if _is_dicom(data) else _decode_pillow(data)
    if int(grey.max()) - int(grey.min()) < 2:
        raise ImageError(f"the image is blank (every pixel is about {int(grey.mean())}); it holds no X-ray")
    return grey


def _too_big(n: int) -> str:
    return f"the file is {n / 2**20:.1f} MiB, over the {MAX_FILE_BYTES / 2**20:.0f} MiB limit"


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
            f"{MAX_PIXELS / 1e6:.0f} megapixel limit (a decompression bomb or an unusually large scan)"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"the image is {width}x{height} pixels; a chest X-ray needs at least {MIN_SIDE} px on each side")


def _is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype="float64")
    if not np.isfinite(arr).all():
        raise ImageError("the image holds non-finite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.full(arr.shape, 0, dtype="uint8")
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype("uint8")


def _decode_pillow(data: bytes) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"not an image: the content is none of {FORMAT_NAMES}") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"the image is too large to decode safely ({error})") from None
    except _DECODE_ERRORS as error:
        raise ImageError(f"the image header is corrupt ({error})") from None
    _check_size(*image.size)
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        raise ImageError(f"the file holds {frames} frames (animated or multi-page); upload a single still X-ray")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _pillow_to_grey(image)
    except ImageError:
        raise
    except _DECODE_ERRORS as error:
        raise ImageError(f"the image data is truncated or corrupt ({error})") from None


def _pillow_to_grey(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _to_uint8(np.asarray(image))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")
    return np.asarray(image, dtype="uint8").copy()


def _decode_dicom(data: bytes) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as error:  # pydicom raises many types on damaged headers
        raise ImageError(f"the DICOM file is corrupt ({error})") from None
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError(
            "the DICOM file has no pixel data (it may be a report or a structured document, or be cut short or corrupt)"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(f"the DICOM file holds {frames} frames; upload a single-frame radiograph")
    _check_size(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0))
    try:
        pixels = ds.pixel_array
    except Exception as error:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise ImageError(f"the DICOM pixel data cannot be decoded ({name}): {error}") from None
    if pixels.ndim == 3:
        pixels = pixels.astype("float64") @ np.array([0.299, 0.587, 0.114])
    else:
        pixels = apply_modality_lut(pixels, ds)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            pixels = apply_voi_lut(pixels, ds)
        else:
            lo, hi = np.percentile(pixels, [0.5, 99.5])
            pixels = np.clip(pixels, lo, hi)
    grey = _to_uint8(pixels)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        grey = 255 - grey
    return grey
