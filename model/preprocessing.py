"""Turn a decoded grey X-ray into the network's input: the one place training, evaluation and serving prepare images.

The steps, in order, are fields of the model config and so recorded in the model card. First the steps that
decide where to look, each a box inside the last, so their geometry composes into one box of the decoded image
(`locate`, `Framing`; the Grad-CAM overlay is drawn there): find the film in the frame (model/film.py), crop to
both lungs with a margin (model/lungs.py; a film found inverted is read inverted back), crop a border band. Then
what is done to the pixels inside that box: harmonize the resolution (down to `harmonize` px square first, so every
source is as coarse as the coarsest), equalize the histogram (global or CLAHE: computed inside the box, never over
a frame), resize to the network's size, stack grey to three channels and apply VGG-16's own preprocessing.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from model.config import PREPROCESSING, ModelConfig, fields_of
from model.film import Box, find_film

CLAHE_CLIP_LIMIT = 0.01


def _key(p) -> str:
    """'256px-crop0-harm224-eqglobal': the size, then each step's key name and value (floats in %g); a step added
    later (`omit_off`) is named only when on, so the keys of configurations without it stay as they were."""
    steps = (f"{f.metadata.get('key', f.name)}{_spelled(getattr(p, f.name))}" for f in dataclasses.fields(p)[1:]
             if not (f.metadata.get("omit_off") and getattr(p, f.name) == f.default))
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


def equalize(grey: np.ndarray, method: str) -> np.ndarray:
    """Global histogram equalization (Pillow), CLAHE (scikit-image) or nothing."""
    if method == "global":
        return np.asarray(ImageOps.equalize(Image.fromarray(grey, mode="L")))
    if method == "clahe":
        from skimage.exposure import equalize_adapthist

        return np.round(equalize_adapthist(grey, clip_limit=CLAHE_CLIP_LIMIT) * 255).astype("uint8")
    return grey


DEFAULT_LOCALISER = Path(__file__).resolve().parent / "localiser" / "lungs.keras"
"""The lung localiser this checkout ships (python -m model.train_lungs); an artifact carries its own copy."""

_localisers: dict = {}
_localisers_lock = threading.Lock()


def use_localiser(localiser) -> None:
    """Make a loaded lung localiser (model.lungs.Localiser) the one preprocessing runs for its version."""
    with _localisers_lock:
        _localisers[localiser.version] = localiser


def localiser_for(version: str):
    """The loaded localiser of `version` (the shipped file is loaded on first need); LocaliserError if none is."""
    from model.lungs import LocaliserError, load_localiser

    with _localisers_lock:
        if version not in _localisers and DEFAULT_LOCALISER.is_file():
            shipped = load_localiser(DEFAULT_LOCALISER)
            _localisers.setdefault(shipped.version, shipped)
        if version not in _localisers:
            raise LocaliserError(f"preprocessing needs lung localiser {version}, which is not loaded (the artifact's "
                                 f"lungs.keras, or --lungs FILE)")
        return _localisers[version]


@dataclass(frozen=True)
class Framing:
    """Where in a decoded image the network looks: `box`, in the image's pixels; whether the film was read
    `inverted` back; whether the localiser found both `lungs` (None: that step is off); the `film` box."""

    box: Box
    film: Box
    inverted: bool = False
    lungs: bool | None = None


def inner(outer: Box, box: Box) -> Box:
    """A box given in the pixels of the region `outer` as a box of the image `outer` lies in."""
    top, left = outer[:2]
    return top + box[0], left + box[1], top + box[2], left + box[3]


def crop_to(grey: np.ndarray, box: Box) -> np.ndarray:
    top, left, bottom, right = box
    return grey[top:bottom, left:right]


def locate(grey: np.ndarray, p: Preprocessing) -> Framing:
    """Run the steps that decide where to look (film, lungs, border crop) and compose their boxes."""
    film = find_film(grey) if p.film else (0, 0, *grey.shape[:2])
    box, inverted, lungs = film, False, None
    if p.lungs:
        from model.lungs import find_lungs

        found = find_lungs(localiser_for(p.lungs), crop_to(grey, film))
        box, inverted, lungs = inner(film, found.box), found.inverted, found.found
    box = inner(box, crop_box((box[2] - box[0], box[3] - box[1]), p.crop))
    return Framing(box=box, film=film, inverted=inverted, lungs=lungs)


def prepare_grey(grey: np.ndarray, p: Preprocessing, framing: Framing | None = None) -> np.ndarray:
    """Find where to look (unless `framing` says), then harmonize, equalize and resize to p.size x p.size."""
    framing = framing or locate(grey, p)
    grey = crop_to(grey, framing.box)
    if framing.inverted:
        grey = 255 - grey
    if p.harmonize:
        grey = resize_grey(grey, p.harmonize)
    return resize_grey(equalize(grey, p.equalize), p.size)


VGG_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype="float32")
"""The ImageNet channel means VGG-16's weights were trained with ("caffe" mode: BGR order, means subtracted, no
scaling), as keras.applications.vgg16.preprocess_input applies them."""


def vgg_input(rgb: np.ndarray) -> np.ndarray:
    """An RGB float image (..., 3) in 0-255 as VGG-16 reads it: channels reversed to BGR, ImageNet means removed."""
    return np.asarray(rgb, dtype="float32")[..., ::-1] - VGG_BGR_MEAN


def network_input(grey: np.ndarray, p: Preprocessing | int) -> tuple[np.ndarray, Framing]:
    """The network's (size, size, 3) float32 input and where in `grey` it came from; an int means plain resizing."""
    p = Preprocessing(p) if isinstance(p, int) else p
    framing = locate(grey, p)
    rgb = np.repeat(prepare_grey(grey, p, framing)[:, :, None].astype("float32"), 3, axis=2)
    return vgg_input(rgb), framing


def to_network_input(grey: np.ndarray, p: Preprocessing | int) -> np.ndarray:
    """The network's (size, size, 3) float32 input; an int means plain resizing to that size."""
    return network_input(grey, p)[0]

