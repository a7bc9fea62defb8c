"""Random, label-preserving distortions of a grey X-ray for training: geometry, exposure and image quality."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

MAX_ROTATION_DEGREES = 7.0
ZOOM_RANGE = (0.9, 1.1)
CONTRAST_RANGE = (0.8, 1.2)
BRIGHTNESS_RANGE = (0.85, 1.15)
BLUR_RADIUS_RANGE = (0.3, 1.2)
RESAMPLE_SCALE_RANGE = (0.4, 0.9)
JPEG_QUALITY_RANGE = (50, 95)
RESAMPLING_FILTERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def augment(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate, zoom, jitter contrast/brightness, blur or resample, and JPEG re-encode; same shape, uint8."""
    if grey.dtype != np.uint8 or grey.ndim != 2:
        raise ValueError(f"augment needs a 2-D uint8 grey image, got {grey.dtype} with shape {grey.shape}")
    image = Image.fromarray(grey)
    image = image.rotate(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES), Image.Resampling.BILINEAR)
    image = _zoom(image, rng.uniform(*ZOOM_RANGE))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(*CONTRAST_RANGE))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(*BRIGHTNESS_RANGE))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_RADIUS_RANGE)))
    else:
        image = _resample(image, rng.uniform(*RESAMPLE_SCALE_RANGE), RESAMPLING_FILTERS[rng.integers(3)])
    image = _jpeg(image, int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1)))
    return np.asarray(image, dtype=np.uint8)


def _zoom(image: Image.Image, factor: float) -> Image.Image:
    """Scale about the centre by `factor`, cropping (zoom in) or padding with black (zoom out) to the same size."""
    cx, cy = image.width / 2, image.height / 2
    inverse = 1 / factor
    matrix = (inverse, 0, cx - cx * inverse, 0, inverse, cy - cy * inverse)
    return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)


def _resample(image: Image.Image, scale: float, resample: Image.Resampling) -> Image.Image:
    """Down-sample by `scale` and back up, losing detail the way an upstream resize does."""
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(small, resample).resize(image.size, resample)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")
