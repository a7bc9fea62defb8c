"""The ways users frame a film: named framings (FRAMINGS) for the robustness benchmark and tests, and random
framings (`random_framing`: borders, screens, crops, small rotations; never inverted) for training views.

Every framing takes and returns a 2-D uint8 grey image; the named ones are deterministic.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from model.film import Box

SCREENS = ((1920, 1080), (1280, 1024), (1366, 768), (1440, 900), (2560, 1440))
"""Common screen sizes (width, height) a film is captured from."""

UNTOUCHED = 0.25
"""The share of random framings that leave the film as it is."""


def border(grey: np.ndarray, fraction: float, level: int) -> np.ndarray:
    """The film inside a border of grey `level`, `fraction` of the film's long side wide on every side."""
    width = int(round(fraction * max(grey.shape)))
    return np.pad(grey, width, constant_values=level)


def letterbox_box(shape: tuple[int, ...], width: int, height: int) -> Box:
    """Where `letterbox` puts a film of `shape` on a width x height screen: scaled to fit, aspect kept, centred."""
    h, w = shape[:2]
    scale = min(width / w, height / h)
    fh, fw = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    top, left = (height - fh) // 2, (width - fw) // 2
    return top, left, top + fh, left + fw


def letterbox(grey: np.ndarray, width: int, height: int, level: int = 0) -> np.ndarray:
    """The film scaled (Pillow) to fit a width x height screen of grey `level` and pasted in its centre; a film
    larger than the screen is shrunk, so the result is never larger than the screen."""
    top, left, bottom, right = letterbox_box(grey.shape, width, height)
    size = (right - left, bottom - top)
    screen = np.full((height, width), level, dtype=np.uint8)
    screen[top:bottom, left:right] = Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return screen


def centre_crop(grey: np.ndarray, keep: float) -> np.ndarray:
    """The middle `keep` of each side (0.9 cuts 5% off every side)."""
    return crop(grey, keep, keep, 0.5, 0.5)


def crop(grey: np.ndarray, keep_h: float, keep_w: float, at_y: float, at_x: float) -> np.ndarray:
    """`keep_h` of the height and `keep_w` of the width; `at_*` in [0, 1] places the kept part (0.5: centred)."""
    h, w = grey.shape
    kh, kw = max(1, int(round(h * keep_h))), max(1, int(round(w * keep_w)))
    top, left = int(round((h - kh) * at_y)), int(round((w - kw) * at_x))
    return grey[top : top + kh, left : left + kw]


def invert(grey: np.ndarray) -> np.ndarray:
    """The negative: bones dark, air bright (a MONOCHROME1 film shown wrong, a negated export)."""
    return 255 - grey


def rotate(grey: np.ndarray, degrees: float, level: int) -> np.ndarray:
    """The film turned by `degrees` (counter-clockwise), enlarged to hold it all, corners filled with `level`."""
    image = Image.fromarray(grey).rotate(degrees, Image.Resampling.BILINEAR, expand=True, fillcolor=int(level))
    return np.asarray(image)


FRAMINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "black border 10%": lambda grey: border(grey, 0.10, 0),
    "black border 20%": lambda grey: border(grey, 0.20, 0),
    "white border 10%": lambda grey: border(grey, 0.10, 255),
    "grey border 10%": lambda grey: border(grey, 0.10, 128),
    "screen 1920x1080": lambda grey: letterbox(grey, 1920, 1080),
    "screen 1280x1024": lambda grey: letterbox(grey, 1280, 1024),
    "crop 90%": lambda grey: centre_crop(grey, 0.9),
    "inverted": invert,
}
"""The framings the robustness benchmark measures, by name."""


def _level(rng: np.random.Generator) -> int:
    """A surround's grey: black, white or any grey."""
    kind = rng.choice(3, p=[0.4, 0.2, 0.4])
    return (0, 255, int(rng.integers(0, 256)))[kind]


def _random_border(grey: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    """A border up to 25% of the long side wide, the same on every side or each side its own."""
    long = max(grey.shape)
    widths = rng.uniform(0, 0.25, size=1 if rng.random() < 0.5 else 4) * long
    top, left, bottom, right = np.broadcast_to(np.round(widths).astype(int), 4)
    return np.pad(grey, ((top, bottom), (left, right)), constant_values=level)


def random_framing(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The film framed as a user might (a training view), never inverted: a quarter of views are left untouched;
    the others are cropped (80-100% of each side, centred or not; 40%), turned up to 5 degrees (40%), then put in
    a border up to 25% of the long side wide (50%) or letterboxed into a common screen (30%), in one grey (black,
    white or any); a view that drew no step at all gets a border."""
    if rng.random() < UNTOUCHED:
        return grey
    level = _level(rng)
    cropped, turned = rng.random() < 0.4, rng.random() < 0.4
    surround = rng.choice(3, p=[0.5, 0.3, 0.2])
    if cropped:
        keep_h, keep_w = rng.uniform(0.8, 1.0, size=2)
        at_y, at_x = (0.5, 0.5) if rng.random() < 0.5 else rng.uniform(0, 1, size=2)
        grey = crop(grey, keep_h, keep_w, at_y, at_x)
    if turned:
        grey = rotate(grey, rng.uniform(-5, 5), level)
    if surround == 1:
        width, height = SCREENS[rng.integers(len(SCREENS))]
        return letterbox(grey, width, height, level)
    if surround == 0 or not (cropped or turned):
        return _random_border(grey, rng, level)
    return grey
