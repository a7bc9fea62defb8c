"""Turn a decoded grey X-ray into the network's input: the one place training, evaluation and serving prepare images.

The steps, in order, are fields of the model config and so recorded in the model card: crop a border
band, harmonize the resolution (down to `harmonize` px square first, so every source is as coarse as
the coarsest), equalize the histogram (global or CLAHE), resize to the network's size, stack grey to
three channels and apply VGG-16's own preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from model.config import ModelConfig
from model.images import Source, read_grey

CLAHE_CLIP_LIMIT = 0.01


@dataclass(frozen=True)
class Preprocessing:
    """How a grey image becomes network input; `key` names it in the feature cache."""

    size: int
    crop: float = 0.0
    harmonize: int = 0
    equalize: str = "none"

    @property
    def key(self) -> str:
        return f"{self.size}px-crop{self.crop:g}-harm{self.harmonize}-eq{self.equalize}"


def preprocessing_of(config: ModelConfig) -> Preprocessing:
    return Preprocessing(config.input_size, config.crop, config.harmonize, config.equalize)


def resize_grey(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 grey image to size x size with Pillow's anti-aliased bilinear filter."""
    return np.asarray(Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR))


def shrink_grey(grey: np.ndarray, max_side: int) -> np.ndarray:
    """A grey image shrunk (Lanczos) to at most max_side pixels on its long side, keeping its aspect; never enlarged."""
    image = Image.fromarray(grey)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def crop_border(grey: np.ndarray, fraction: float) -> np.ndarray:
    """Remove `fraction` of the height from top and bottom and of the width from left and right."""
    if fraction <= 0:
        return grey
    h, w = grey.shape
    dy, dx = int(round(h * fraction)), int(round(w * fraction))
    return grey[dy: h - dy, dx: w - dx]


def equalize(grey: np.ndarray, method: str) -> np.ndarray:
    """Global histogram equalization (Pillow), CLAHE (scikit-image) or nothing."""
    if method == "global":
        return np.asarray(ImageOps.equalize(Image.fromarray(grey, mode="L")))
    if method == "clahe":
        from skimage.exposure import equalize_adapthist

        return np.round(equalize_adapthist(grey, clip_limit=CLAHE_CLIP_LIMIT) * 255).astype("uint8")
    return grey


def prepare_grey(grey: np.ndarray, p: Preprocessing) -> np.ndarray:
    """Crop, harmonize, equalize and resize a uint8 grey image to p.size x p.size."""
    grey = crop_border(grey, p.crop)
    if p.harmonize:
        grey = resize_grey(grey, p.harmonize)
    return resize_grey(equalize(grey, p.equalize), p.size)


def to_network_input(grey: np.ndarray, p: Preprocessing | int) -> np.ndarray:
    """The network's (size, size, 3) float32 input; an int means plain resizing to that size."""
    from keras.applications.vgg16 import preprocess_input

    p = Preprocessing(p) if isinstance(p, int) else p
    rgb = np.repeat(prepare_grey(grey, p)[:, :, None].astype("float32"), 3, axis=2)
    return preprocess_input(rgb)


def load_image(source: Source, p: Preprocessing | int) -> np.ndarray:
    """One file to one network input."""
    return to_network_input(read_grey(source), p)
