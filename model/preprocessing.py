"""Turn a decoded grey X-ray into the network's input: the one place training, evaluation and serving prepare images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from model.images import Source, read_grey


def resize_grey(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 grey image to size x size with Pillow's anti-aliased bilinear filter."""
    return np.asarray(Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR))


def shrink_grey(grey: np.ndarray, max_side: int) -> np.ndarray:
    """A grey image shrunk (Lanczos) to at most max_side pixels on its long side, keeping its aspect; never enlarged."""
    image = Image.fromarray(grey)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def to_network_input(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize, stack grey to three channels and apply VGG-16's own preprocessing."""
    from keras.applications.vgg16 import preprocess_input

    rgb = np.repeat(resize_grey(grey, size)[:, :, None].astype("float32"), 3, axis=2)
    return preprocess_input(rgb)


def load_image(source: Source, size: int) -> np.ndarray:
    """One file to one network input of shape (size, size, 3)."""
    return to_network_input(read_grey(source), size)
