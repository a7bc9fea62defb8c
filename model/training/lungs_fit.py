"""Fit the lung localiser: a small U-Net on the lung-mask pairs of ../shared/data/lungs, split by patient, with
its Dice on held-out patients (adults and children apart), as they are and framed the ways users frame films.

The network sees the whole film, framed or not, resized to its square input (grey 0..255; it scales itself),
and answers a lung probability map of the same size. Training views are cropped, rotated, bordered or
letterboxed, and degraded in exposure, sharpness and compression, image and mask together. Images are decoded
and shrunk once, then cached.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from sklearn.model_selection import GroupShuffleSplit

from model.augment import BLUR_RADIUS_RANGE, CONTRAST_RANGE, JPEG_QUALITY_RANGE, MAX_ROTATION_DEGREES, _jpeg
from model.framing import SCREENS, crop, letterbox, rotate
from model.lungs import LUNG, Localiser, lung_maps, weights_version
from model.progress import duration

log = logging.getLogger(__name__)

SIZE = 128
"""The network's square input (and output map) in pixels."""
BASE_FILTERS = 8
LEVELS = 4
CACHE_SIDE = 256
"""Images and masks are cached with their long side at this many pixels; views are made from these."""
HELD_OUT = 0.2
"""The share of each kind's patients held out for the Dice report (never trained on)."""
EPOCHS = 60
BATCH = 16
VIEWS_PER_EPOCH = 2
"""Each training film gives this many random views per epoch."""
INVERTED_VIEWS = 0.15
"""This share of training views shows the film inverted (bones dark) with an empty mask, so the map answers lungs
only on a film shown as it should be: what model/lungs.py tells polarity by."""
LEARNING_RATE = 3e-3
BORDER_WIDTH = (0.0, 0.25)
"""A border's width on each side, as a share of the film's long side."""
CROP = (0.8, 1.0)
"""A crop keeps this share of the film's height and width."""
GAMMA = (0.6, 1.6)
FRAMINGS = ("none", "border", "letterbox")


@dataclass(frozen=True)
class Pair:
    """One film and its lung mask (uint8 0/255, same size), with its kind (adult, pediatric) and patient."""

    name: str
    kind: str
    patient: str
    image: np.ndarray
    mask: np.ndarray


def read_pairs(root: Path) -> list[Pair]:
    """The films of root/MANIFEST.csv and their masks at their own size."""
    manifest = Path(root) / "MANIFEST.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{root} has no MANIFEST.csv: not a lung-mask folder (see ../shared/data/README.md)")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"file", "mask", "kind", "patient_id"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{manifest}: missing columns {sorted(missing)}")
    return [Pair(row["file"], row["kind"], row["patient_id"], _grey(root / row["file"]), _grey(root / row["mask"]))
            for row in rows]


def _grey(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def cached_pairs(root: Path, cache: Path | None) -> list[Pair]:
    """read_pairs shrunk to CACHE_SIDE on the long side (masks too, bilinear), kept in `cache` keyed by the
    manifest's content; None: no cache."""
    root = Path(root)
    key = hashlib.sha256((root / "MANIFEST.csv").read_bytes()).hexdigest()[:12] if (root / "MANIFEST.csv").is_file() \
        else ""
    path = Path(cache) / f"lungs-{key}-{CACHE_SIDE}px.npz" if cache and key else None
    if path and path.is_file():
        with np.load(path) as stored:
            meta = stored["meta"]
            return [Pair(str(n), str(k), str(p), stored[f"image{i}"], stored[f"mask{i}"])
                    for i, (n, k, p) in enumerate(meta)]
    pairs = [Pair(p.name, p.kind, p.patient, _shrink(p.image), _shrink(p.mask)) for p in read_pairs(root)]
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{what}{i}": getattr(p, what) for i, p in enumerate(pairs) for what in ("image", "mask")}
        np.savez(path, meta=np.array([(p.name, p.kind, p.patient) for p in pairs]), **arrays)
    return pairs


def _shrink(grey: np.ndarray) -> np.ndarray:
    image = Image.fromarray(grey)
    image.thumbnail((CACHE_SIDE, CACHE_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(image)


def split_patients(pairs: Sequence[Pair], held_out: float = HELD_OUT, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): about `held_out` of each kind's patients held out, never a patient on both sides."""
    train, test = [], []
    for kind in sorted({p.kind for p in pairs}):
        members = [p for p in pairs if p.kind == kind]
        splitter = GroupShuffleSplit(n_splits=1, test_size=held_out, random_state=seed)
        rest, out = next(splitter.split(members, groups=[p.patient for p in members]))
        train += [members[i] for i in rest]
        test += [members[i] for i in out]
    return train, test


def framed_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                framing: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A training view of a film and its mask: cropped (80-100%), rotated (up to 7 degrees), bordered with a
    random grey or letterboxed into a screen (or `framing` as named; model/framing.py's geometry, the mask's
    surround never lung), then exposure, blur and JPEG on the image only; (uint8 image, float32 mask 0..1) at
    SIZE x SIZE, the whole framed picture resized as the network sees it."""
    level = int(rng.choice([0, 255, int(rng.integers(0, 256))], p=[0.3, 0.2, 0.5]))
    if rng.random() < 0.5:
        keep_h, keep_w, at_y, at_x = *rng.uniform(*CROP, size=2), *rng.uniform(0, 1, size=2)
        image, mask = (crop(a, keep_h, keep_w, at_y, at_x) for a in (image, mask))
    angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    image, mask = rotate(image, angle, level), rotate(mask, angle, 0)
    framing = framing or FRAMINGS[rng.integers(len(FRAMINGS))]
    if framing == "border":
        widths = np.round(rng.uniform(*BORDER_WIDTH, size=1 if rng.random() < 0.5 else 4) * max(image.shape))
        top, left, bottom, right = np.broadcast_to(widths.astype(int), 4)
        pad = ((top, bottom), (left, right))
        image, mask = np.pad(image, pad, constant_values=level), np.pad(mask, pad, constant_values=0)
    elif framing == "letterbox":
        width, height = SCREENS[rng.integers(len(SCREENS))]
        scale = max(image.shape) / max(width, height)
        width, height = round(width * scale), round(height * scale)
        image, mask = letterbox(image, width, height, level), letterbox(mask, width, height, 0)
    film = _exposure(Image.fromarray(image), rng).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        film = film.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_RADIUS_RANGE)))
    if rng.random() < 0.5:
        film = _jpeg(film, int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1)))
    lungs = Image.fromarray(mask).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.asarray(film, "uint8"), np.asarray(lungs, "float32") / 255


def _inverted(film: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 255 - film, np.zeros_like(mask)


def _exposure(film: Image.Image, rng: np.random.Generator) -> Image.Image:
    gamma = rng.uniform(*GAMMA)
    film = film.point([round(255 * (v / 255) ** gamma) for v in range(256)])
    return ImageEnhance.Contrast(film).enhance(rng.uniform(*CONTRAST_RANGE))


def build_unet(size: int = SIZE, base: int = BASE_FILTERS, levels: int = LEVELS):
    """A small U-Net: grey 0..255 (size x size x 1) in, lung probability (size x size x 1) out."""
    import keras
    from keras import layers

    x = inputs = keras.Input((size, size, 1), name="grey")
    x = layers.Rescaling(1 / 255)(x)
    skips = []
    for level in range(levels):
        x = _convs(x, base * 2**level)
        if level < levels - 1:
            skips.append(x)
            x = layers.MaxPooling2D()(x)
    for level in reversed(range(levels - 1)):
        x = layers.Concatenate()([layers.UpSampling2D()(x), skips[level]])
        x = _convs(x, base * 2**level)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="lungs")(x)
    return keras.Model(inputs, outputs, name="lung_localiser")


def _convs(x, filters: int):
    from keras import layers

    for _ in range(2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer="he_normal")(x)
    return x


def bce_dice(y_true, y_pred):
    """Binary cross-entropy plus (1 - soft Dice over the batch)."""
    from keras import ops
    from keras.losses import binary_crossentropy

    overlap = ops.sum(y_true * y_pred)
    dice = (2 * overlap + 1) / (ops.sum(y_true) + ops.sum(y_pred) + 1)
    return ops.mean(binary_crossentropy(y_true, y_pred)) + 1 - dice


def training_views(pairs: Sequence[Pair], rng: np.random.Generator, views: int = VIEWS_PER_EPOCH):
    """One epoch of random framed views of every pair, shuffled, INVERTED_VIEWS of them inverted with no lungs:
    (x (n, SIZE, SIZE, 1) float32, y alike)."""
    order = rng.permutation(np.repeat(np.arange(len(pairs)), views))
    made = [_inverted(*framed_pair(pairs[i].image, pairs[i].mask, rng)) if rng.random() < INVERTED_VIEWS
            else framed_pair(pairs[i].image, pairs[i].mask, rng) for i in order]
    return (np.stack([m[0] for m in made])[..., None].astype("float32"),
            np.stack([m[1] for m in made])[..., None])


def fit_unet(pairs: Sequence[Pair], epochs: int = EPOCHS, seed: int = 0, base: int = BASE_FILTERS):
    """Train a U-Net on fresh framed views of `pairs` each epoch; logs one line per epoch."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    network = build_unet(base=base)
    steps = epochs * -(-len(pairs) * VIEWS_PER_EPOCH // BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps, alpha=0.02)
    network.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice)
    start = time.monotonic()
    for epoch in range(epochs):
        x, y = training_views(pairs, rng)
        loss = network.fit(x, y, batch_size=BATCH, epochs=1, verbose=0).history["loss"][-1]
        log.info("lungs epoch %d/%d: loss %.4f, %s", epoch + 1, epochs, loss, duration(time.monotonic() - start))
    return network


def dice(prob: np.ndarray, mask: np.ndarray) -> float:
    """Dice of the map thresholded at LUNG against a 0/255 (or 0..1) mask of the same size."""
    found, truth = prob >= LUNG, mask >= (128 if mask.dtype == np.uint8 else 0.5)
    both = found.sum() + truth.sum()
    return float(2 * (found & truth).sum() / both) if both else 1.0


def held_out_dice(localiser: Localiser, pairs: Sequence[Pair], seed: int = 1) -> dict:
    """Dice per kind on held-out pairs at each film's own size, as they are and framed (one random border or
    letterbox per film, with crop and rotation, at SIZE: what the network sees); and the share of an inverted
    film the map calls lung (should be near 0)."""
    rng = np.random.default_rng(seed)
    result: dict = {}
    for kind in sorted({p.kind for p in pairs}):
        members = [p for p in pairs if p.kind == kind]
        plain = [dice(m, p.mask) for m, p in zip(lung_maps(localiser, [p.image for p in members]), members)]
        views = [framed_pair(p.image, p.mask, rng, framing=FRAMINGS[1 + i % 2]) for i, p in enumerate(members)]
        framed = [dice(m, v[1]) for m, v in zip(lung_maps(localiser, [v[0] for v in views]), views)]
        negatives = lung_maps(localiser, [255 - p.image for p in members])
        result[kind] = {"films": len(members), "patients": len({p.patient for p in members}),
                        "dice_mean": float(np.mean(plain)), "dice_median": float(np.median(plain)),
                        "dice_min": float(np.min(plain)), "framed_dice_mean": float(np.mean(framed)),
                        "inverted_lung_share": float(np.mean([(m >= LUNG).mean() for m in negatives]))}
    return result


def save_network(network, path: Path) -> None:
    """Save the network alone (no optimizer state: a third of the size), as load_localiser reads it."""
    import keras

    bare = keras.Model.from_config(network.get_config())
    bare.set_weights(network.get_weights())
    bare.save(path)


def as_localiser(network) -> Localiser:
    """A trained network as the serving side loads it."""
    return Localiser(network=network, version=weights_version(network), size=int(network.input_shape[1]))
