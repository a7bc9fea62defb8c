"""Turn a decoded grey X-ray into the network's input: the one place training, evaluation and serving prepare images.

The steps, in order, are fields of the model config and so recorded in the model card: crop a border
band, harmonize the resolution (down to `harmonize` px square first, so every source is as coarse as
the coarsest), equalize the histogram (global or CLAHE), resize to the network's size, stack grey to
three channels and apply VGG-16's own preprocessing.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from PIL import Image, ImageOps

from model.config import PREPROCESSING, ModelConfig, fields_of

CLAHE_CLIP_LIMIT = 0.01


def _key(p) -> str:
    """'256px-crop0-harm224-eqglobal': the size, then each step's key name and value (floats in %g)."""
    steps = (f"{f.metadata.get('key', f.name)}{_spelled(getattr(p, f.name))}" for f in dataclasses.fields(p)[1:])
    return "-".join([f"{p.size}px", *steps])


def _spelled(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


@functools.cache
def preprocessing_type(config_type: type = ModelConfig) -> type:
    """The frozen dataclass of the network's `size` and config_type's preprocessing fields (same names, types,
    defaults and metadata), whose `key` names it in the feature cache: a new field is a new part of the key."""
    steps = [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
             for f in fields_of(PREPROCESSING, config_type)]
    namespace = {"key": property(_key), "__module__": __name__,
                 "__doc__": "How a grey image becomes network input; `key` names it in the feature cache."}
    return dataclasses.make_dataclass("Preprocessing", [("size", int), *steps], frozen=True, namespace=namespace)


Preprocessing = preprocessing_type(ModelConfig)


def preprocessing_of(config: ModelConfig) -> Preprocessing:
    """The preprocessing `config` prescribes (of its own class's preprocessing fields)."""
    steps = {f.name: getattr(config, f.name) for f in fields_of(PREPROCESSING, type(config))}
    return preprocessing_type(type(config))(config.input_size, **steps)


def resize_grey(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 grey image to size x size with Pillow's anti-aliased bilinear filter."""
    return np.asarray(Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR))


def shrink_grey(grey: np.ndarray, max_side: int) -> np.ndarray:
    """A grey image shrunk (Lanczos) to at most max_side pixels on its long side, keeping its aspect; never enlarged."""
    image = Image.fromarray(grey)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


Box = tuple[int, int, int, int]
"""(top, left, bottom, right) in pixels, bottom and right exclusive."""


def crop_box(shape: tuple[int, ...], fraction: float) -> Box:
    """The region of an image of `shape` that border cropping by `fraction` keeps: the part the network sees."""
    h, w = shape[:2]
    dy, dx = (int(round(h * fraction)), int(round(w * fraction))) if fraction > 0 else (0, 0)
    return dy, dx, h - dy, w - dx


def scale_box(box: Box, shape: tuple[int, ...], to: tuple[int, ...]) -> Box:
    """`box` of an image of `shape` in the pixels of one of shape `to` (at least one pixel each way)."""
    (top, left, bottom, right), (h, w), (th, tw) = box, shape[:2], to[:2]
    top, left = round(top * th / h), round(left * tw / w)
    return top, left, max(top + 1, round(bottom * th / h)), max(left + 1, round(right * tw / w))


def crop_border(grey: np.ndarray, fraction: float) -> np.ndarray:
    """Remove `fraction` of the height from top and bottom and of the width from left and right."""
    top, left, bottom, right = crop_box(grey.shape, fraction)
    return grey[top:bottom, left:right]


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

