"""Recent predictions by image SHA-256, so flagging right after predicting does not run the network again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from model.images import file_sha256
from model.serving.predictor import Prediction, Predictor


@dataclass
class PredictionCache:
    """The latest `size` predictions, least recently used dropped first; safe to call from several threads."""

    predictor: Predictor
    size: int = 64
    _items: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, data: bytes, predict: Callable[[bytes], Prediction] | None = None) -> tuple[str, Prediction]:
        """(SHA-256 of the bytes, their prediction by `predict` (default the predictor's)); raises ImageError."""
        sha256 = file_sha256(data)
        with self._lock:
            if sha256 in self._items:
                self._items.move_to_end(sha256)
                return sha256, self._items[sha256]
        prediction = (predict or self.predictor.predict)(data)
        with self._lock:
            self._items[sha256] = prediction
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return sha256, prediction
