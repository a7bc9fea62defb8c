"""A newly installed model, noticed between requests and loaded beside the serving one: no restart needed."""

from __future__ import annotations

import functools
import gc
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from model.artifact import LOCALISER_FILE, artifact_paths, load_card
from model.gate import GATE_FILE
from model.serving.predictor import Predictor, load_predictor

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int] | None, ...]


def _work(jobs: queue.SimpleQueue) -> None:
    while True:
        jobs.get()()


@functools.cache
def _loader() -> queue.SimpleQueue:
    """The jobs of the process's one model-loading thread. A fresh thread per load kept about 100 MiB more after 8
    reloads, one thread kept reused does not (benchmarks/bench_reload.py)."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_work, args=(jobs,), name="model-reload", daemon=True).start()
    return jobs


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, modification time, size) of a file, or None while there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _stamp(path: Path) -> Stamp | None:
    """The stamps of every file a load reads (card, model, input gate, lung localiser), or None while there is no card:
    a file rewritten after a failed load (a good model.keras under the same card) is a new artifact to try."""
    model_path, card_path = artifact_paths(path)
    files = (card_path, model_path, card_path.parent / GATE_FILE, card_path.parent / LOCALISER_FILE)
    stamps = tuple(_file_stamp(file) for file in files)
    return stamps if stamps[0] is not None else None


@dataclass
class ModelWatch:
    """Watches the artifact at `path`: when its card names another version than `version`, loads that model on the
    model-loading thread while the old one keeps answering, and hands it over once (poll). A model that fails to
    load is logged and the old one stays until one of the artifact's files changes again (then it is tried again)."""

    path: Path
    version: str
    load: Callable[[Path], Predictor] = functools.partial(load_predictor, serving=True)
    _stamp: Stamp | None = field(init=False, default=None)
    _ready: Predictor | None = field(init=False, default=None)
    _loading: bool = field(init=False, default=False)
    _handed_over: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._stamp = _stamp(self.path)

    def poll(self) -> Predictor | None:
        """The newly loaded predictor, once, when one is ready; else None (a changed card starts loading it). The poll
        after a handover has the loading thread collect the replaced model (see _load)."""
        with self._lock:
            if self._ready is not None:
                ready, self._ready, self._handed_over = self._ready, None, True
                return ready
            if self._handed_over:
                self._handed_over = False
                _loader().put(gc.collect)
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
        _loader().put(self._load)
        return None

    def _load(self) -> None:
        """Load on the loading thread, then collect what loading left: a Keras model is a web of reference cycles, so a
        replaced or measured one waits for Python's rare full collection, and the app kept about 35 MiB per reload
        meanwhile (benchmarks/bench_reload.py)."""
        try:
            predictor = self.load(self.path)
        except Exception as error:
            log.warning("model at %s not loaded, still serving %s: %s", self.path, self.version, error)
            with self._lock:
                self._loading = False
            return
        gc.collect()
        with self._lock:
            self._ready, self._loading, self.version = predictor, False, predictor.version
        log.info("model version %s loaded; serving it from the next request", predictor.version)
