"""Generate, in code, files an X-ray upload can be: unusable ones and valid-but-unusual ones."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from model.images import MAX_FILE_BYTES

HUGE_DICOM_SIDE = 6300
WINDOW_CENTER = 2000
WINDOW_WIDTH = 2000
RESCALE_SLOPE = 2.0
RESCALE_INTERCEPT = -1024.0


def pattern(height: int, width: int, maximum: int = 255) -> np.ndarray:
    """A chest-X-ray-like test picture: a left-to-right ramp with a bright disc, so flips and rotations show."""
    y, x = np.mgrid[0:height, 0:width]
    ramp = x / max(width - 1, 1) * 0.6 + y / max(height - 1, 1) * 0.1
    disc = ((y - height * 0.3) ** 2 + (x - width * 0.7) ** 2) < (min(height, width) * 0.15) ** 2
    return np.round(np.clip(ramp + 0.3 * disc, 0, 1) * maximum).astype("uint16" if maximum > 255 else "uint8")


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **params)
    return buffer.getvalue()


def _grey(height: int, width: int) -> Image.Image:
    return Image.fromarray(pattern(height, width), mode="L")


def _with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG claiming another size in its header, with the header's CRC recomputed so it still parses."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


def _corrupt_idat(png: bytes) -> bytes:
    """Overwrite the start of the IDAT chunk's zlib stream (its CRC is left stale)."""
    start = png.index(b"IDAT") + 4
    return png[:start] + b"\xff" * 16 + png[start + 16:]


def _dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None, **elements) -> Dataset:
    """A DX image dataset holding `pixels`, built the pydicom 3 documented way."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality = "DX"
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "PHANTOM"
    if pixels is not None:
        ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8, generate_instance_uid=False)
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _jpeg2000_junk() -> Dataset:
    """A DICOM declaring JPEG 2000 pixel data whose single fragment is junk."""
    ds = _dicom(None)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.Rows, ds.Columns = 256, 256
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 4])
    ds["PixelData"].VR = "OB"
    return ds


def _deflated_huge_dicom(side: int = HUGE_DICOM_SIDE) -> bytes:
    """A deflated 16-bit RGB DICOM of side x side pixels (about 227 MiB decoded) that is a few hundred KB on disk."""
    return _deflated_dicom(side, 3, bytes(side * 3 * 2))


def deflated_large_dicom(side: int = HUGE_DICOM_SIDE) -> bytes:
    """A valid deflated 16-bit grey DICOM of side x side pixels (76 MiB decoded, within the limit), a ramp in every
    row, of a few hundred KB: what a large decode under concurrency is measured with."""
    row = np.linspace(0, 4095, side).astype("<u2").tobytes()
    return _deflated_dicom(side, 1, row)


def _deflated_dicom(side: int, samples: int, row: bytes) -> bytes:
    """A deflated 16-bit DICOM of side x side pixels whose every row is `row`, deflated row by row, so making it
    never holds the decoded image in memory."""
    ds = _dicom(None)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    head = _dicom_bytes(ds)
    meta_end = 144 + struct.unpack("<I", head[140:144])[0]
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, side * len(row))
    parts = [head[:meta_end], deflater.compress(zlib.decompress(head[meta_end:], -zlib.MAX_WBITS) + element)]
    parts += [deflater.compress(row) for _ in range(side)]
    parts.append(deflater.flush())
    return b"".join(parts)


def _with_element_text(data: bytes, keyword_tag: bytes, vr: bytes, old: bytes, new: bytes) -> bytes:
    """The DICOM bytes with one explicit-VR element's text value swapped for another of the same length."""
    before = keyword_tag + vr + struct.pack("<H", len(old)) + old
    assert len(old) == len(new) and data.count(before) == 1
    return data.replace(before, keyword_tag + vr + struct.pack("<H", len(new)) + new)


def _malformed_dicoms() -> dict[str, tuple[str, bytes]]:
    """DICOMs whose header attributes are malformed: NumberOfFrames "ab", WindowWidth 0, BitsAllocated 1."""
    frames = _dicom_bytes(_dicom(pattern(128, 128, 4095), bits_stored=12, NumberOfFrames="1"))
    one_bit = _dicom(pattern(128, 128, 4095), bits_stored=12)
    one_bit.BitsAllocated = 1
    return {
        "dicom_frames_not_a_number": (
            "frames.dcm", _with_element_text(frames, b"\x28\x00\x08\x00", b"IS", b"1 ", b"ab")),
        "dicom_window_width_zero": ("window0.dcm", _dicom_bytes(_dicom(
            pattern(128, 128, 4095), bits_stored=12, WindowCenter=WINDOW_CENTER, WindowWidth=0))),
        "dicom_one_bit": ("onebit.dcm", _dicom_bytes(one_bit)),
    }


def _write(directory: Path, files: dict[str, tuple[str, bytes]]) -> dict[str, Path]:
    paths = {}
    for kind, (name, data) in files.items():
        paths[kind] = directory / name
        paths[kind].write_bytes(data)
    return paths


def make_bad_files(directory: Path) -> dict[str, Path]:
    """Write unusable files into `directory`, one per kind; returns kind -> path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png = png_bytes(_grey(128, 128))
    jpeg = jpeg_bytes(_grey(128, 128))
    dicom = _dicom_bytes(_dicom(pattern(128, 128, 4095), bits_stored=12))

    gif = io.BytesIO()
    frames = [_grey(128, 128), Image.fromarray(255 - pattern(128, 128), mode="L")]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    no_pixels = _dicom(None, Modality="SR")
    multiframe = _dicom(np.stack([pattern(128, 128, 4095)] * 3), bits_stored=12)

    paths = _write(directory, {
        "empty": ("empty.png", b""),
        "text_as_png": ("notes.png", b"Patient notes: cough, fever.\nNo image here.\n" * 20),
        "html_as_jpg": ("page.jpg", b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body></body></html>"),
        "pdf": ("report.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"),
        "truncated_png": ("truncated.png", png[: len(png) // 2]),
        "truncated_jpeg": ("truncated.jpg", jpeg[: len(jpeg) // 2]),
        "corrupt_png_idat": ("corrupt.png", _corrupt_idat(png)),
        "bomb_png": ("bomb.png", _with_ihdr_size(png, 20000, 20000)),
        "too_many_pixels_png": ("huge.png", _with_ihdr_size(png, 8000, 8000)),
        "tiny_1x1": ("tiny.png", png_bytes(Image.new("L", (1, 1), 128))),
        "thin_40x4000": ("thin.png", png_bytes(_grey(4000, 40))),
        "blank": ("blank.png", png_bytes(Image.new("L", (256, 256), 17))),
        "animated_gif": ("animated.gif", gif.getvalue()),
        "multipage_tiff": ("pages.tiff", tiff.getvalue()),
        "dicom_no_pixels": ("report.dcm", _dicom_bytes(no_pixels)),
        "dicom_multiframe": ("cine.dcm", _dicom_bytes(multiframe)),
        "dicom_truncated": ("truncated.dcm", dicom[:132] + bytes(range(256)) * 3),
        "dicom_cut_in_pixels": ("cut.dcm", dicom[: len(dicom) - 4096]),
        "dicom_jpeg2000_junk": ("j2k.dcm", _dicom_bytes(_jpeg2000_junk())),
        "dicom_deflated_huge": ("huge.dcm", _deflated_huge_dicom()),
        **_malformed_dicoms(),
    })
    oversized = directory / "oversized.png"
    with oversized.open("wb") as f:
        f.write(png)
        f.truncate(MAX_FILE_BYTES + 1)
    paths["oversized"] = oversized
    return paths


def make_valid_unusual_files(directory: Path) -> dict[str, Path]:
    """Write usable X-ray files in unusual encodings into `directory`; returns kind -> path.

    Pixel content is `pattern(128, 96)` (rows x columns; 12-bit for DICOM, 16-bit for grey16_png) except
    big_jpeg (4000x5000). The EXIF-rotated JPEG stores it as 96x128 with orientation 6, so it displays
    as 128x96; mpo_jpeg is a phone-style JPEG with a second, preview frame.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    h, w = 128, 96
    grey = _grey(h, w)
    rgb = Image.merge("RGB", [grey, grey, grey])
    rgba = rgb.copy()
    rgba.putalpha(255)
    palette = grey.quantize(64)
    palette_transparent = palette.copy()
    palette_transparent.info["transparency"] = 0
    stored = Image.fromarray(np.rot90(pattern(h, w)).copy(), mode="L")
    exif = Image.Exif()
    exif[0x0112] = 6
    tiff, bmp, mpo = io.BytesIO(), io.BytesIO(), io.BytesIO()
    grey.save(tiff, format="TIFF")
    grey.save(bmp, format="BMP")
    rgb.save(mpo, format="MPO", quality=95, save_all=True, append_images=[rgb.resize((w // 2, h // 2))])
    wide = pattern(h, w, 65535)
    pixels12 = pattern(h, w, 4095)

    return _write(directory, {
        "grey8_png": ("grey8.png", png_bytes(grey)),
        "grey16_png": ("grey16.png", png_bytes(Image.fromarray(wide))),
        "rgb_jpeg": ("rgb.jpg", jpeg_bytes(rgb)),
        "rgba_png": ("rgba.png", png_bytes(rgba)),
        "palette_png": ("palette.png", png_bytes(palette)),
        "palette_transparent_png": ("palette_transparent.png", png_bytes(palette_transparent, transparency=0)),
        "cmyk_jpeg": ("cmyk.jpg", jpeg_bytes(rgb.convert("CMYK"))),
        "exif_rotated_jpeg": ("rotated.jpg", jpeg_bytes(stored, exif=exif.tobytes())),
        "dicom_mono2_window": ("mono2.dcm", _dicom_bytes(_dicom(
            pixels12, "MONOCHROME2", 12, WindowCenter=WINDOW_CENTER, WindowWidth=WINDOW_WIDTH))),
        "dicom_mono1": ("mono1.dcm", _dicom_bytes(_dicom(
            pixels12, "MONOCHROME1", 12, WindowCenter=WINDOW_CENTER, WindowWidth=WINDOW_WIDTH))),
        "dicom_rescale": ("rescale.dcm", _dicom_bytes(_dicom(
            pixels12, "MONOCHROME2", 12, RescaleSlope=RESCALE_SLOPE, RescaleIntercept=RESCALE_INTERCEPT))),
        "big_jpeg": ("big.jpg", jpeg_bytes(_grey(4000, 5000))),
        "tiff": ("grey.tiff", tiff.getvalue()),
        "bmp": ("grey.bmp", bmp.getvalue()),
        "mpo_jpeg": ("phone.jpg", mpo.getvalue()),
    })
