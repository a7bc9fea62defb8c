"""Concurrent predictions served together: callers that arrive while the network runs form its next batch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import settings
from model.decode_budget import TRIM_AFTER_BYTES, release_freed_memory
from model.images import Source
from model.serving.network import on_network_thread
from model.serving.predictor import Decoded, Prediction, Predictor, decode


@dataclass
class _Slot:
    """One caller's decoded image and, once its batch has run, its outcome."""

    image: Decoded
    outcome: Prediction | BaseException | None = None
    done: bool = False

    def result(self) -> Prediction:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@dataclass
class BatchingPredictor:
    """`predict` as Predictor's, but concurrent calls share forward passes of up to `max_batch_size` images.

    A caller that finds the network idle takes everything waiting (itself included) through the process's network
    thread (model.serving.network); the others wait for their result. Each caller decodes its own file first, so
    decoding runs in parallel. When the batcher falls idle after TRIM_AFTER_BYTES of pixels since its last trim,
    `release` hands the heap the network thread's preprocessing freed back to the system (after a flood of large
    films its float copies otherwise stay in that thread's arena).
    """

    predictor: Predictor
    max_batch_size: int = settings.DEFAULT_MAX_BATCH_SIZE
    release: Callable[[], None] = release_freed_memory
    _pending: list[_Slot] = field(default_factory=list)
    _running: bool = False
    _since_trim: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def predict(self, source: Source) -> Prediction:
        """Raises model.images.ImageError for unusable files (only this caller's)."""
        slot = _Slot(decode(source))
        with self._changed:
            self._pending.append(slot)
        while True:
            with self._changed:
                while self._running and not slot.done:
                    self._changed.wait()
                if slot.done:
                    return slot.result()
                self._running = True
                batch = self._pending[: self.max_batch_size]
                del self._pending[: self.max_batch_size]
            self._run(batch)

    def _run(self, batch: list[_Slot]) -> None:
        """Predict a batch and hand each caller its outcome; a failure is every caller's failure."""
        outcomes: list[Prediction | BaseException]
        try:
            outcomes = list(on_network_thread(self.predictor.predict_many, [slot.image for slot in batch]))
        except BaseException as error:
            outcomes = [error] * len(batch)
        with self._changed:
            for slot, outcome in zip(batch, outcomes):
                slot.outcome, slot.done = outcome, True
            self._running = False
            self._since_trim += sum(slot.image.grey.nbytes for slot in batch)
            trim = not self._pending and self._since_trim >= TRIM_AFTER_BYTES
            if trim:
                self._since_trim = 0
            self._changed.notify_all()
        if trim:
            self.release()

