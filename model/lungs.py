"""Find both lung fields in a grey film with the small lung localiser network, and tell whether the film is inverted.

The localiser (model/training/lungs_fit.py trains it) maps the whole image, resized to its square input, to a lung
probability map. The rule that believes a map: two lung-shaped regions of plausible area side by side (or one
region that spans both halves, joined behind the heart, with a valley between the lungs), holding most of the
map's lung. Then the box is both lungs with a margin; otherwise the whole image, found=False, and a reason.

Polarity: the localiser is trained to find no lungs on inverted films (bones dark), and lungs hold air, so on a
film as it should be shown they are darker than the body around them. A film whose map passes the rule with lungs
darker than their surroundings is read as it is (one pass of the network). Otherwise the network runs again on the
inverted image: the film is called inverted only when that map passes the rule with lungs darker than their
surroundings there, and is more confident (mean probability over what it calls lung) than the film's own map
when that passed the rule too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from model.film import Box

LUNG = 0.5
"""Probability from which a pixel of the map counts as lung."""
MARGIN = 0.08
"""The box adds this share of the lungs' height and width on every side (clipped to the image)."""
SPECK = 0.003
"""Regions under this share of the image are noise, ignored by the rule."""
SMALLEST_LUNG = 0.01
"""Each lung covers at least this share of the image (an adult's median is 18%; 1% allows a film framed small)."""
AREA = (0.03, 0.75)
"""Both lungs together cover a share of the image in this range."""
PAIR_RATIO = 0.25
"""The smaller lung has at least this share of the larger one's area."""
HELD = 0.75
"""The two lungs hold at least this share of everything the map calls lung (else the map is scattered)."""
SIDE_BY_SIDE = 0.5
"""Two lungs overlap in columns by at most this share of the narrower one, and in rows by at least this share of
the shorter one."""
SHAPE = (0.7, 6.0)
"""A lung's height over its width lies in this range..."""
FILL = 0.3
"""...and it fills at least this share of its bounding box."""
VALLEY = 0.6
"""One region is both lungs joined when its column profile, in its middle third, drops below this share of the
lower of the two peaks either side."""
RING = 1 / 16
"""The surroundings of the lungs, for polarity: a band this share of the map's side wide around them."""
DARKER = 0.02
"""Lungs darker than their surroundings by more than this share of the grey range read as the film's polarity."""


class LocaliserError(ValueError):
    """A lung localiser file is missing, corrupt or not a lung localiser; the one-line message says which and why."""


@dataclass(frozen=True)
class Localiser:
    """A loaded lung localiser: its Keras `network` (size x size x 1 grey 0..255 in, lung probability out), its
    `version` (first 12 hex digits of SHA-256 over its weights) and its input `size`."""

    network: Any
    version: str
    size: int

    @functools.cached_property
    def _forward(self):
        import tensorflow as tf

        network = self.network
        return tf.function(lambda x: network(x, training=False),
                           input_signature=[tf.TensorSpec([None, self.size, self.size, 1], tf.float32)])

    def maps(self, inputs: np.ndarray) -> np.ndarray:
        """Lung probability maps (n, size, size) of a batch of network inputs (n, size, size) in 0..255."""
        if not len(inputs):
            return np.zeros((0, self.size, self.size), "float32")
        return self._forward(inputs[..., None].astype("float32")).numpy()[..., 0]


@dataclass(frozen=True)
class Lungs:
    """Where the lungs are in a grey image: `box` (top, left, bottom, right, margin included; the whole image when
    not `found`), whether the film is `inverted`, the lungs' share of the image (`area`), and why the rule failed
    (`reason`, '' when found)."""

    box: Box
    found: bool
    inverted: bool
    area: float
    reason: str


def weights_version(network) -> str:
    """The first 12 hex digits of SHA-256 over the network's weight arrays (shapes, dtypes and values, in order)."""
    digest = hashlib.sha256()
    for array in network.get_weights():
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:12]


def load_localiser(path: Path) -> Localiser:
    """The lung localiser saved at `path` (a .keras file); LocaliserError with a one-line reason if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise LocaliserError(f"lung localiser {path} is missing")
    import keras

    try:
        network = keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise LocaliserError(f"{path} is not a readable lung localiser (corrupt, cut short or another format; "
                             f"{type(error).__name__})") from None
    shapes = (tuple(network.input_shape), tuple(network.output_shape)) if hasattr(network, "input_shape") else None
    if not shapes or len(shapes[0]) != 4 or shapes[0][1:] != shapes[1][1:] or shapes[0][3] != 1 \
            or shapes[0][1] != shapes[0][2] or not shapes[0][1]:
        raise LocaliserError(f"{path} is a Keras model but not a lung localiser (needs a square one-channel image in "
                             f"and a map of the same size out, has {shapes})")
    return Localiser(network=network, version=weights_version(network), size=int(shapes[0][1]))


def network_inputs(greys: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Each 2-D uint8 grey image resized whole (aspect not kept) to size x size: (n, size, size) float32."""
    for grey in greys:
        if grey.ndim != 2 or grey.dtype != np.uint8:
            raise ValueError(f"the lung localiser takes 2-D uint8 images, not {grey.dtype} of shape {grey.shape}")
    inputs = np.empty((len(greys), size, size), "float32")
    for i, grey in enumerate(greys):
        inputs[i] = Image.fromarray(grey).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return inputs


def lung_maps(localiser: Localiser, greys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per image, its lung probability map at the image's own size (float32, 0..1); one batched network call."""
    maps = localiser.maps(network_inputs(greys, localiser.size))
    return [np.asarray(Image.fromarray(m).resize(grey.shape[::-1], Image.Resampling.BILINEAR)).clip(0, 1)
            for m, grey in zip(maps, greys)]


@dataclass(frozen=True)
class _Reading:
    """What the rule made of one map: the lungs' box in map pixels (None when not found), the reason, the lung
    mask the rule kept, its share of the map and the map's mean probability there (its confidence)."""

    box: tuple[int, int, int, int] | None
    reason: str
    mask: np.ndarray
    area: float
    confidence: float


def _read(prob: np.ndarray) -> _Reading:
    """Apply the two-lung rule to one square probability map."""
    labels, n = ndi.label(prob >= LUNG)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:] / labels.size
    keep = [i + 1 for i in np.argsort(-areas) if areas[i] >= SPECK]
    kept = np.zeros(n + 1, bool)
    kept[keep] = True
    mask = kept[labels]
    total = float(areas[[k - 1 for k in keep]].sum()) if keep else 0.0
    failed = functools.partial(_Reading, None, mask=mask, area=total,
                               confidence=float(prob[mask].mean()) if keep else 0.0)
    if not keep:
        return failed("no lung-like region")
    if len(keep) >= 2 and areas[keep[1] - 1] >= PAIR_RATIO * areas[keep[0] - 1]:
        parts = [labels == keep[0], labels == keep[1]]
        if (areas[keep[0] - 1] + areas[keep[1] - 1]) < HELD * total:
            return failed("the lung-like regions are scattered")
    else:
        if areas[keep[0] - 1] < HELD * total:
            return failed("the lung-like regions are scattered")
        parts = _split_joined(labels == keep[0])
        if parts is None:
            return failed("one lung-like region, not two lungs side by side")
    reason = _pair_problem(parts, total)
    if reason:
        return failed(reason)
    return dataclasses.replace(failed(""), box=_bounds(parts[0] | parts[1]))


def _bounds(region: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a non-empty boolean region."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _split_joined(region: np.ndarray) -> list[np.ndarray] | None:
    """A region that is both lungs joined, cut at the valley of its column profile; None without a valley."""
    profile = region.sum(axis=0).astype(float)
    _, left, _, right = _bounds(region)
    third = (right - left) // 3
    if third < 2:
        return None
    valley = left + third + int(np.argmin(profile[left + third:right - third]))
    peaks = min(profile[left:left + third].max(), profile[right - third:right].max())
    if profile[valley] >= VALLEY * peaks:
        return None
    parts = [region.copy(), region.copy()]
    parts[0][:, valley:] = False
    parts[1][:, :valley] = False
    return parts


def _pair_problem(parts: list[np.ndarray], total: float) -> str:
    """Why two regions are not a pair of lungs side by side ('' when they are)."""
    if not AREA[0] <= total <= AREA[1]:
        return f"the lung-like regions cover {total:.0%} of the image, implausible for both lungs"
    boxes = []
    for part in parts:
        top, left, bottom, right = _bounds(part)
        height, width = bottom - top, right - left
        if part.mean() < SMALLEST_LUNG:
            return "one lung-like region is too small for a lung"
        if not SHAPE[0] <= height / width <= SHAPE[1] or part.sum() < FILL * height * width:
            return "a lung-like region is not lung-shaped"
        boxes.append((top, left, bottom, right))
    (t0, l0, b0, r0), (t1, l1, b1, r1) = boxes
    column_overlap = min(r0, r1) - max(l0, l1)
    row_overlap = min(b0, b1) - max(t0, t1)
    if column_overlap > SIDE_BY_SIDE * min(r0 - l0, r1 - l1) or row_overlap < SIDE_BY_SIDE * min(b0 - t0, b1 - t1):
        return "the two lung-like regions are not side by side"
    return ""


def _darker(image: np.ndarray, mask: np.ndarray) -> float:
    """How much darker the masked lungs are than a band around them, as a share of the grey range."""
    ring = ndi.maximum_filter(mask, size=2 * max(1, round(RING * mask.shape[0])) + 1) & ~mask
    if not mask.any() or not ring.any():
        return 0.0
    return float(np.median(image[ring]) - np.median(image[mask])) / 255


def _as_read(reading: _Reading, image: np.ndarray) -> bool:
    """Whether this reading shows the film in its polarity: lungs found, and darker than around them."""
    return reading.box is not None and _darker(image, reading.mask) > DARKER


def find_lungs(localiser: Localiser, grey: np.ndarray) -> Lungs:
    """Both lungs of a 2-D uint8 grey image with a margin, and its polarity (see the module's docstring)."""
    return find_lungs_many(localiser, [grey])[0]


def find_lungs_many(localiser: Localiser, greys: Sequence[np.ndarray]) -> list[Lungs]:
    """find_lungs for each image: one batched network call, and one more for those not read as they are."""
    inputs = network_inputs(greys, localiser.size)
    readings = [_read(m) for m in localiser.maps(inputs)]
    doubtful = [i for i, (r, x) in enumerate(zip(readings, inputs)) if not _as_read(r, x)]
    inverted = {}
    for i, prob in zip(doubtful, localiser.maps(255 - inputs[doubtful])):
        flipped, first = _read(prob), readings[i]
        if _as_read(flipped, 255 - inputs[i]) and (first.box is None or flipped.confidence > first.confidence):
            inverted[i] = flipped
    return [_lungs(inverted.get(i, reading), grey.shape, i in inverted) for i, (reading, grey)
            in enumerate(zip(readings, greys))]


def lungs_of_map(prob: np.ndarray, shape: tuple[int, int]) -> Lungs:
    """The two-lung rule on one square probability map (any size) of an image of `shape`, polarity aside."""
    return _lungs(_read(prob), shape, False)


def _lungs(reading: _Reading, shape: tuple[int, int], inverted: bool) -> Lungs:
    """The Lungs of an image of `shape` from the reading of its map: the box scaled from map pixels, with margin."""
    h, w = shape
    if reading.box is None:
        return Lungs(box=(0, 0, h, w), found=False, inverted=inverted, area=reading.area, reason=reading.reason)
    size = reading.mask.shape[0]
    top, left, bottom, right = reading.box
    dy, dx = MARGIN * (bottom - top), MARGIN * (right - left)
    box = (max(0, int(np.floor((top - dy) * h / size))), max(0, int(np.floor((left - dx) * w / size))),
           min(h, int(np.ceil((bottom + dy) * h / size))), min(w, int(np.ceil((right + dx) * w / size))))
    return Lungs(box=box, found=True, inverted=inverted, area=reading.area, reason="")
