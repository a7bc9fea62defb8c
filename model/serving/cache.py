"""Recent predictions by image SHA-256, so flagging right after predicting does not run the network again."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from model.decode_budget import release_freed_memory
from model.images import file_sha256
from model.preprocessing import scale_box, shrink_grey
from model.serving.predictor import Prediction, Predictor

DEFAULT_MAX_BYTES = 64 * 2**20
LARGE_GREY_BYTES = 16 * 2**20


def _nbytes(prediction: Prediction) -> int:
    return prediction.grey.nbytes + prediction.heatmap.nbytes


@dataclass
class PredictionCache:
    """The latest predictions, at most `size` of them and `max_bytes` of images, least recently used dropped first.

    With `preview_side`, each kept Prediction's `grey` is shrunk to that long side (and its crop box with it), so a
    huge upload does not stay in memory at full size. At most `slots` network calls run at once, whichever threads ask; safe to share.
    """

    predictor: Predictor
    size: int = 64
    preview_side: int | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    slots: int = 1
    _items: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _network: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self._network = threading.BoundedSemaphore(max(1, self.slots))

    @property
    def nbytes(self) -> int:
        """Bytes of images the cache holds now."""
        with self._lock:
            return sum(_nbytes(p) for p in self._items.values())

    def __call__(self, data: bytes, predict: Callable[[bytes], Prediction] | None = None) -> tuple[str, Prediction]:
        """(SHA-256 of the bytes, their prediction); raises model.images.ImageError for unusable files.

        `predict` (a batcher's, which bounds the network itself) replaces the predictor's own call, which
        takes one of the cache's network slots.
        """
        sha256 = file_sha256(data)
        found = self.get(sha256)
        if found is not None:
            return sha256, found
        if predict is not None:
            prediction = predict(data)
        else:
            with self._network:
                prediction = self.predictor.predict(data)
        if self.preview_side:
            large = prediction.grey.nbytes >= LARGE_GREY_BYTES
            small = shrink_grey(prediction.grey, self.preview_side)
            boxes = {name: box and scale_box(box, prediction.grey.shape, small.shape)
                     for name, box in (("crop_box", prediction.crop_box), ("film_box", prediction.film_box))}
            prediction = dataclasses.replace(prediction, grey=small, **boxes)
            if large:
                release_freed_memory()
        with self._lock:
            self._items[sha256] = prediction
            total = sum(_nbytes(p) for p in self._items.values())
            while len(self._items) > max(1, self.size) or (total > self.max_bytes and len(self._items) > 1):
                total -= _nbytes(self._items.popitem(last=False)[1])
        return sha256, prediction

    def get(self, sha256: str) -> Prediction | None:
        """The kept prediction of the image with this SHA-256 (now the most recently used), or None."""
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return self._items[sha256]
        return None
