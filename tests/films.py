"""Synthetic films for the film finder's and the framings' tests: textured, dark and noisy at their edges."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def synthetic_film(height: int, width: int, seed: int = 0, edge: int = 20, noise: float = 8.0) -> np.ndarray:
    """A uint8 'film': a smooth body with two darker lung fields and noise, fading to grey `edge` at its edges
    and corners (a collimation shadow), so its outermost lines are dark but never uniform."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    yy, xx = (y + 0.5) / height * 2 - 1, (x + 0.5) / width * 2 - 1
    body = 150 + 50 * np.cos(3 * xx) * np.sin(2 * yy + 0.5)
    lungs = -60 * np.exp(-(((np.abs(xx) - 0.45) / 0.25) ** 2 + (yy / 0.5) ** 2))
    fade = np.clip(1 - np.maximum(np.abs(xx), np.abs(yy)) ** 6, 0, 1)
    grey = edge + (body + lungs - edge) * fade + rng.normal(0, noise, (height, width))
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def jpeg(grey: np.ndarray, quality: int = 75) -> np.ndarray:
    """`grey` encoded as a JPEG of `quality` and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def pad(grey: np.ndarray, top: int, left: int, bottom: int, right: int, level: int) -> np.ndarray:
    """`grey` inside a band of grey `level` with these widths on each side."""
    return np.pad(grey, ((top, bottom), (left, right)), constant_values=level)
