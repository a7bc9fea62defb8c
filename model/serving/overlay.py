"""The overlay picture: a Grad-CAM heatmap blended over the grey upload, on the region the network read (numpy and
Pillow only, so any engine's heatmap is shown the same way)."""

from __future__ import annotations

import functools

import numpy as np

from model.preprocessing import Box, scale_box


@functools.cache
def _jet(alpha: float) -> np.ndarray:
    """alpha times matplotlib's jet colormap as a 256 x 3 float32 table (a lookup is 4x faster than the colormap)."""
    from matplotlib import colormaps

    return (alpha * 255.0 * colormaps["jet"](np.linspace(0, 1, 256))[:, :3]).astype("float32")


def overlay(grey: np.ndarray, heatmap: np.ndarray, box: Box | None = None, box_shape: tuple[int, ...] | None = None,
            alpha: float = 0.4) -> np.ndarray:
    """Blend a [0, 1] heatmap (any resolution) over a uint8 grey image as an RGB uint8 picture.

    The heatmap covers `box` (model.preprocessing.crop_box: the region the network saw; None: all of it), given
    in the pixels of an image of `box_shape` (default: grey's own, e.g. the full upload when grey is its preview);
    outside it the picture stays plain grey.
    """
    from PIL import Image

    h, w = grey.shape
    top, left, bottom, right = scale_box(box or (0, 0, *(box_shape or grey.shape)[:2]), box_shape or grey.shape, (h, w))
    small = Image.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype("uint8"), mode="L")
    heat = np.asarray(small.resize((right - left, bottom - top), Image.Resampling.BILINEAR))
    blended = np.repeat(grey[:, :, None].astype("float32"), 3, axis=2)
    blended[top:bottom, left:right] = (1 - alpha) * blended[top:bottom, left:right] + _jet(alpha)[heat]
    return np.clip(blended, 0, 255).astype("uint8")
