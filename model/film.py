"""Find the film in the frame: the box left when uniform bands (borders of any grey, letterbox bars, screens, thin
frames, text strips) are trimmed from each side, or the whole image where there is no frame (numpy only).

A line (row or column) is border when nearly all of its pixels lie within a few grey levels of its band's level,
the grey of the band's outermost line; a band may carry a little text or markers, and it always ends on a clean
line, so a film whose edge has the border's grey is cut where its texture begins. Bands of other greys inside
(nested borders, a thin frame line) are trimmed in turn. A film's dark but noisy edge is not uniform, so it stays;
nor is a slow gradient (a clean line's median stays within DRIFT of the band's level, and a side takes no second
band of nearly the same grey over the same lines). A box under SMALLEST of a side is not believed.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]
"""(top, left, bottom, right) in an image's pixels; bottom and right are exclusive."""

TOLERANCE = 10
"""Grey levels either side of a band's level that still count as the band (JPEG noise on a border)."""
DRIFT = 2
"""A clean line's median lies this close to the band's level: a film's slow gradient is not a band."""
UNIFORM = 0.97
"""The share of a line's pixels at the band's level that makes it a clean border line."""
CARRIES = 0.5
"""Inside a band, a line carrying text or markers keeps at least this share at the level..."""
BAND = 0.8
"""...and the band, up to its last clean line, keeps this share on average."""
SMALLEST = 0.25
"""A box shorter than this share of either side of the image is not believed: the whole image is kept."""

_FIRST_CHUNK, _LARGEST_CHUNK = 16, (64, 512)
"""Lines are read in chunks growing from the first to the largest (rows, columns: a column chunk is a strided
slice, cheap only when wide)."""


def find_film(grey: np.ndarray) -> Box:
    """The box of the film inside `grey` (2-D uint8): uniform bands trimmed from every side, or the whole image."""
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"find_film takes a 2-D uint8 image, not {grey.dtype} of shape {grey.shape}")
    h, w = grey.shape
    box, last = [0, 0, h, w], [None] * 4  # last: each side's last band (its level, the span of its lines)
    changed = True
    while changed:
        changed = False
        for side in range(4):
            if _lines(box, side)[0] < 2:
                continue
            level, span = int(np.median(_block(grey, box, side, 0, 1)[0])), _span(box, side)
            if last[side] and last[side][1] == span and abs(level - last[side][0]) <= TOLERANCE:
                continue  # the same lines, nearly the same grey: a gradient, not a nested band
            depth = _band_depth(grey, box, side, level)
            if depth:
                box[side] += depth if side < 2 else -depth
                last[side], changed = (level, span), True
    top, left, bottom, right = box
    if bottom - top < SMALLEST * h or right - left < SMALLEST * w:
        return 0, 0, h, w
    return top, left, bottom, right


def _lines(box: list[int], side: int) -> tuple[int, int]:
    """How many lines the box has, seen from `side` (0 top, 1 left, 2 bottom, 3 right), and their length."""
    rows, cols = box[2] - box[0], box[3] - box[1]
    return (rows, cols) if side % 2 == 0 else (cols, rows)


def _span(box: list[int], side: int) -> tuple[int, int]:
    """Where the lines seen from `side` start and end."""
    return (box[1], box[3]) if side % 2 == 0 else (box[0], box[2])


def _block(grey: np.ndarray, box: list[int], side: int, start: int, stop: int) -> tuple[np.ndarray, int]:
    """The box's lines start..stop counted inward from `side`, as a slice of `grey` (no copy), and the axis that
    runs along each line; the lines of the bottom and right sides come innermost first."""
    top, left, bottom, right = box
    if side == 0:
        return grey[top + start : top + stop, left:right], 1
    if side == 1:
        return grey[top:bottom, left + start : left + stop], 0
    if side == 2:
        return grey[bottom - stop : bottom - start, left:right], 1
    return grey[top:bottom, right - stop : right - start], 0


def _band_depth(grey: np.ndarray, box: list[int], side: int, level: int) -> int:
    """How many outer lines on `side` (never all) form one uniform band at grey `level` (0: none)."""
    n = _lines(box, side)[0] - 1
    shares, centred, start, chunk = [], [], 0, _FIRST_CHUNK
    while start < n:
        share, near = _line_stats(*_block(grey, box, side, start, min(start + chunk, n)), level)
        if side >= 2:
            share, near = share[::-1], near[::-1]
        below = np.flatnonzero(share < CARRIES)
        stop = below[0] if below.size else share.size
        shares.append(share[:stop])
        centred.append(near[:stop])
        if below.size:
            break
        start, chunk = start + chunk, min(2 * chunk, _LARGEST_CHUNK[side % 2])
    share, near = np.concatenate(shares), np.concatenate(centred)
    clean = (share >= UNIFORM) & near & (np.cumsum(share) >= BAND * np.arange(1, share.size + 1))
    ends = np.flatnonzero(clean)
    return int(ends[-1]) + 1 if ends.size else 0


def _count_below(block: np.ndarray, along: int, value: int) -> np.ndarray:
    """Per line of a uint8 block, how many pixels are darker than `value` (a compare and a byte sum: fast)."""
    counter = np.uint16 if block.shape[along] < 2**16 else np.uint32
    return (block < value).view(np.uint8).sum(axis=along, dtype=counter).astype(np.int64)


def _line_stats(block: np.ndarray, along: int, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Per line: the share of pixels within TOLERANCE of `level`, and whether its median lies within DRIFT."""
    width = block.shape[along]
    darker = _count_below(block, along, level - DRIFT)
    brighter = width - _count_below(block, along, level + DRIFT + 1)
    within = _count_below(block, along, level + TOLERANCE + 1) - _count_below(block, along, level - TOLERANCE)
    return within / width, 2 * np.maximum(darker, brighter) < width
