"""Decode any X-ray file (PNG, JPEG, TIFF, DICOM, ...) to a grey image at its own size, or say clearly why not."""

from __future__ import annotations

import hashlib
import io
import struct
import unicodedata
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from model.decode_budget import decodes

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
MAX_DECODED_BYTES = 128 * 2**20
MIN_SIDE = 64
_DEFLATED = "1.2.840.10008.1.2.1.99"
_DICOM_HEADER_BYTES = 1 * 2**20
_DICOM_BITS = (8, 16, 32, 64)
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


def pixel_sha256(grey: np.ndarray) -> str:
    """The identity of an image: hex SHA-256 of its decoded grey pixels (read_grey's uint8) and their shape.

    The same picture re-encoded (a JPEG stored as lossless PNG, a PNG saved again) keeps it, unlike the file's
    bytes; the app records it at flag time and model.data computes it for every data folder.
    """
    pixels = np.ascontiguousarray(grey, dtype=np.uint8)
    return hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode() + pixels.tobytes()).hexdigest()


def image_identity(source: Source) -> str:
    """pixel_sha256 of the decoded file; ImageError for unusable files."""
    return pixel_sha256(read_grey(source))


def read_grey(source: Source) -> np.ndarray:
    """Decode a file to a 2-D uint8 grey image at its native size, upright, with DICOM LUTs applied."""
    data = load_bytes(source)
    with decodes().reserve(decoded_size(data)):
        pixels, invert = _decode(data)
        return pixels if pixels.dtype == np.uint8 else _stretch(pixels, 255, invert)


def decoded_size(data: bytes) -> int:
    """Bytes the file's decoded pixel data will take, from its header alone; 0 when the header does not say (the
    decoder then refuses the file or finds it small)."""
    try:
        if _is_dicom(data):
            ds = _dicom_header(data)
            return int(np.prod([_dicom_int(ds, key, default) for key, default in
                                (("Rows", 0), ("Columns", 0), ("SamplesPerPixel", 1), ("NumberOfFrames", 1))])
                       * max(1, _dicom_int(ds, "BitsAllocated", 16) // 8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.width * image.height * _pillow_bytes_per_pixel(image.mode)
    except Exception:  # any unreadable header: decoding reports it
        return 0


def lossless_png(source: Source) -> bytes:
    """The decoded grey image as PNG, with the same checks as read_grey; 16-bit when decoding went beyond 8 bits.

    8-bit sources (most PNG, JPEG, BMP, GIF, WebP) give the 8-bit grey the model reads; 16-bit PNG/TIFF and every
    DICOM (after its modality and VOI LUTs) give 16-bit grey ('I;16'), so a flagged image keeps its depth.
    """
    data = load_bytes(source)
    with decodes().reserve(decoded_size(data)):
        pixels, invert = _decode(data)
        image = Image.fromarray(pixels if pixels.dtype == np.uint8 else _stretch(pixels, 65535, invert))
        del pixels
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
        return buffer.getvalue()


def _decode(data: bytes) -> tuple[np.ndarray, bool]:
    """(uint8 grey, or float32 grey still to stretch; whether to invert it); ImageError for blank images."""
    pixels, invert = _decode_dicom(data) if _is_dicom(data) else _decode_pillow(data)
    lo, hi = float(pixels.min()), float(pixels.max())
    if (hi - lo < 2) if pixels.dtype == np.uint8 else hi <= lo:
        level = int(pixels.mean()) if pixels.dtype == np.uint8 else 0
        raise ImageError(f"the image is blank (every pixel is about {level}); it holds no X-ray")
    return pixels, invert


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


def check_decoded_size(width: int, height: int, samples: int, bytes_per_sample: int, frames: int = 1) -> None:
    """Refuse, before decoding, an image whose pixel data would take more than MAX_DECODED_BYTES in memory."""
    _check_size(width, height)
    size = width * height * samples * bytes_per_sample * frames
    if size > MAX_DECODED_BYTES:
        raise ImageError(
            f"the image's decoded pixel data would take {size / 2**20:.0f} MiB ({width}x{height}, {samples} "
            f"sample(s) of {bytes_per_sample} byte(s), {frames} frame(s)), over the "
            f"{MAX_DECODED_BYTES / 2**20:.0f} MiB limit"
        )


def _is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _stretch(arr: np.ndarray, top: int, invert: bool = False) -> np.ndarray:
    """Map the image's min..max linearly onto 0..top (uint8 for 255, uint16 above), in float32; inverted if asked."""
    if not np.isfinite(arr).all():
        raise ImageError("the image holds non-finite pixel values")
    dtype = "uint8" if top <= 255 else "uint16"
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.full(arr.shape, top if invert else 0, dtype=dtype)
    out = np.subtract(arr, lo, dtype=np.float32)
    out *= np.float32(top / (hi - lo))
    np.rint(out, out=out)
    if invert:
        np.subtract(np.float32(top), out, out=out)
    return out.astype(dtype)


def _pillow_bytes_per_pixel(mode: str) -> int:
    """Bytes one pixel takes once Pillow has decoded an image of this mode."""
    try:
        info = ImageMode.getmode(mode)
    except KeyError:
        return 4
    return max(1, np.dtype(info.typestr).itemsize * len(info.bands) if info.typestr else 4)


def _decode_pillow(data: bytes) -> tuple[np.ndarray, bool]:
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
    check_decoded_size(*image.size, 1, _pillow_bytes_per_pixel(image.mode))
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _pillow_to_grey(image), False
    except ImageError:
        raise
    except _DECODE_ERRORS as error:
        raise ImageError(f"the image data is truncated or corrupt ({error})") from None


def _pillow_to_grey(image: Image.Image) -> np.ndarray:
    """uint8 grey for 8-bit modes; float32 (to stretch) for 16- and 32-bit integer and float modes."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return np.asarray(image).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode != "L":
        image = image.convert("RGB").convert("L")
    return np.asarray(image, dtype="uint8").copy()


def _read_dicom(data: bytes):
    """The parsed DICOM dataset (pixel data not yet decoded); ImageError when it cannot be parsed."""
    import pydicom

    _check_inflated_size(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return pydicom.dcmread(io.BytesIO(data))
    except Exception as error:  # pydicom raises many types on damaged headers
        raise ImageError(f"the DICOM file is corrupt ({error})") from None


def _deflated_start(data: bytes) -> int:
    """Where a deflated DICOM's deflated dataset starts (the end of its file meta information); 0 if not deflated."""
    has_meta_length = len(data) >= 144 and data[132:138] == b"\x02\x00\x00\x00UL"
    meta_end = 144 + struct.unpack("<I", data[140:144])[0] if has_meta_length else 0
    return meta_end if meta_end and _DEFLATED.encode() in data[132:meta_end] else 0


def _dicom_header(data: bytes):
    """The dataset's attributes before its pixel data, without inflating or copying the pixel data."""
    import pydicom

    start = _deflated_start(data)
    if start:
        return _header_from(zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:], 65536))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _check_inflated_size(data: bytes) -> None:
    """For deflated DICOM, refuse before pydicom inflates it whole when it inflates past what the limit allows."""
    meta_end = _deflated_start(data)
    if not meta_end:
        return
    inflater, cap, total, head = zlib.decompressobj(-zlib.MAX_WBITS), MAX_DECODED_BYTES + _DICOM_HEADER_BYTES, 0, b""
    pending = data[meta_end:]
    try:
        while pending and total <= cap:
            chunk = inflater.decompress(pending, 2**20)
            pending = inflater.unconsumed_tail
            head, total = head or chunk[:65536], total + len(chunk)
            if not chunk:
                break
    except zlib.error as error:
        raise ImageError(f"the deflated DICOM data is corrupt ({error})") from None
    if total > cap:
        _check_dicom_budget(_header_from(head))
        raise ImageError(f"the deflated DICOM data inflates to over {cap / 2**20:.0f} MiB, more than an image "
                         f"within the {MAX_DECODED_BYTES / 2**20:.0f} MiB decoded-size limit needs")


def _header_from(inflated_head: bytes):
    """The dataset's attributes before its pixel data, parsed from the start of the inflated stream (None if cut)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return read_dataset(DicomBytesIO(inflated_head), False, True,
                                stop_when=lambda tag, vr, length: tag == 0x7FE00010)
    except Exception:  # a header cut short or damaged: the caller falls back to the inflated size
        return None


def _dicom_int(ds, keyword: str, default: int) -> int:
    """A whole-number header attribute (the default when absent); ImageError naming it when malformed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        value = ds.get(keyword, None)
    if value is None or str(value).strip() == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ImageError(f"the DICOM attribute {keyword} is {str(value)[:40]!r}, not a whole number") from None


def _check_dicom_budget(ds) -> None:
    """Refuse, from header attributes alone, geometry that is malformed or whose pixel data exceeds the limit."""
    if ds is None:
        return
    bits = _dicom_int(ds, "BitsAllocated", 16)
    if bits not in _DICOM_BITS:
        raise ImageError(f"the DICOM attribute BitsAllocated is {bits}; only {', '.join(map(str, _DICOM_BITS))} "
                         "bits per sample are supported (1-bit data is an overlay or mask, not a radiograph)")
    frames = _dicom_int(ds, "NumberOfFrames", 1)
    if frames < 1:
        raise ImageError(f"the DICOM attribute NumberOfFrames is {frames}; it must be at least 1")
    if frames > 1:
        raise ImageError(f"the DICOM file holds {frames} frames; upload a single-frame radiograph")
    samples = _dicom_int(ds, "SamplesPerPixel", 1)
    if samples not in (1, 3):
        raise ImageError(f"the DICOM attribute SamplesPerPixel is {samples}; it must be 1 (grey) or 3 (colour)")
    check_decoded_size(_dicom_int(ds, "Columns", 0), _dicom_int(ds, "Rows", 0), samples, bits // 8, frames)


def _window(ds) -> tuple[float, float] | None:
    """The first (center, width) of the DICOM display window, or None; ImageError when it is malformed."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    values = []
    for keyword in ("WindowCenter", "WindowWidth"):
        value = ds[keyword].value
        value = value[0] if ds[keyword].VM > 1 else value
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            raise ImageError(f"the DICOM attribute {keyword} is {str(value)[:40]!r}, not a number") from None
    center, width = values
    if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
        raise ImageError(f"the DICOM attribute WindowWidth is {width:g}; a display window must be at least 1 wide")
    return center, width


def _dicom_grey(pixels: np.ndarray, ds) -> np.ndarray:
    """Modality rescale and VOI window in float32 (pydicom's LUTs for LUT sequences and non-linear windows)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    window = _window(ds)
    if "ModalityLUTSequence" in ds or "VOILUTSequence" in ds or str(ds.get("VOILUTFunction", "LINEAR")) != "LINEAR":
        try:
            out = apply_modality_lut(pixels, ds)
            return np.asarray(apply_voi_lut(out, ds) if window or "VOILUTSequence" in ds else out, dtype=np.float32)
        except (ValueError, TypeError, IndexError, KeyError) as error:
            raise ImageError(f"the DICOM lookup tables cannot be applied ({error})") from None
    arr = pixels.astype(np.float32)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        arr *= np.float32(float(ds.RescaleSlope))
        arr += np.float32(float(ds.RescaleIntercept))
    if window is None:
        lo, hi = np.percentile(arr, [0.5, 99.5])
    else:
        center, width = window
        lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.clip(arr, lo, hi, out=arr)


def _decode_dicom(data: bytes) -> tuple[np.ndarray, bool]:
    ds = _read_dicom(data)
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError(
            "the DICOM file has no pixel data (it may be a report or a structured document, or be cut short or corrupt)"
        )
    _check_dicom_budget(ds)
    try:
        pixels = ds.pixel_array
    except Exception as error:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        raise ImageError(f"the DICOM pixel data cannot be decoded ({name}): {error}") from None
    if pixels.ndim == 3:
        grey = pixels[..., 0] * np.float32(0.299)
        grey += pixels[..., 1] * np.float32(0.587)
        grey += pixels[..., 2] * np.float32(0.114)
    else:
        grey = _dicom_grey(pixels, ds)
    return grey, str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"


SCOPE_FACTS = ("Modality", "ViewPosition", "BodyPartExamined", "PatientAge")
MAX_FACT_CHARS = 64
"""The longest header value kept (DICOM's LO is 64 characters; BodyPartExamined and the rest are shorter)."""


def _plain(ch: str) -> str:
    kind = unicodedata.category(ch)
    return " " if kind == "Cc" else "" if kind.startswith("C") else ch


def header_text(value: object) -> str:
    """A header value as one line of plain text: control characters and line breaks as spaces, format characters
    (zero-width, text direction) dropped, white space runs as one space, at most MAX_FACT_CHARS characters."""
    return " ".join("".join(map(_plain, str(value))).split())[:MAX_FACT_CHARS].strip()


def image_facts(source: Source) -> dict[str, str]:
    """What a DICOM header says the image is (SCOPE_FACTS present in it, as header_text: data for the input gate
    and its reasons, never markup or terminal control); {} for other formats or a header that cannot be read
    (decoding reports that)."""
    data = load_bytes(source)
    if not _is_dicom(data):
        return {}
    import pydicom

    try:
        _check_inflated_size(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            facts = {name: header_text(ds.get(name, "")) for name in SCOPE_FACTS}
            return {name: text for name, text in facts.items() if text}
    except Exception:  # a damaged header: read_grey says why
        return {}
