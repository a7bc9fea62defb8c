"""A newly installed model, noticed between requests and loaded beside the serving one: no restart needed."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from model.artifact import artifact_paths, load_card
from model.serving.predictor import Predictor, load_predictor

log = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, modification time, size) of the artifact's card, or None while there is none."""
    try:
        info = artifact_paths(path)[1].stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


@dataclass
class ModelWatch:
    """Watches the artifact at `path`: when its card names another version than `version`, loads that model in a
    thread while the old one keeps answering, and hands it over once (poll). A model that fails to load is logged
    and the old one stays until the card changes again."""

    path: Path
    version: str
    load: Callable[[Path], Predictor] = partial(load_predictor, serving=True)
    _stamp: tuple[int, int, int] | None = field(init=False, default=None)
    _ready: Predictor | None = field(init=False, default=None)
    _loading: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._stamp = _stamp(self.path)

    def poll(self) -> Predictor | None:
        """The newly loaded predictor, once, when one is ready; else None (a changed card starts loading it)."""
        with self._lock:
            if self._ready is not None:
                ready, self._ready = self._ready, None
                return ready
            stamp = _stamp(self.path)
            if self._loading or stamp is None or stamp == self._stamp:
                return None
            self._stamp = stamp
            try:
                version = load_card(self.path).version
            except (OSError, ValueError) as error:
                log.warning("model at %s not reloaded: %s", self.path, error)
                return None
            if version == self.version:
                return None
            self._loading = True
        log.info("model version %s installed at %s; loading it beside %s", version, self.path, self.version or "none")
        threading.Thread(target=self._load, name="model-reload", daemon=True).start()
        return None

    def _load(self) -> None:
        try:
            predictor = self.load(self.path)
        except Exception as error:
            log.warning("model at %s not loaded, still serving %s: %s", self.path, self.version, error)
            with self._lock:
                self._loading = False
            return
        with self._lock:
            self._ready, self._loading, self.version = predictor, False, predictor.version
        log.info("model version %s loaded; serving it from the next request", predictor.version)
