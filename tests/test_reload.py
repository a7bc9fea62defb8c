"""The app's model watch: a newly installed model is loaded beside the serving one and handed over once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from model.artifact import CARD_FILE, MODEL_FILE
from model.serving.predictor import load_predictor
from model.serving.reload import ModelWatch
from tests.server import make_model


def install_version(folder: Path, version: str) -> None:
    card = json.loads((folder / CARD_FILE).read_text())
    (folder / CARD_FILE).write_text(json.dumps({**card, "version": version}))


def settled(watch: ModelWatch, deadline_s: float = 60.0):
    """Poll (which starts loading a changed card's model), wait until loading has finished, and poll again."""
    end = time.monotonic() + deadline_s
    assert watch.poll() is None
    while watch._loading and time.monotonic() < end:
        time.sleep(0.05)
    return watch.poll()


def test_a_new_version_is_loaded_once_and_a_broken_one_leaves_the_old_serving(tmp_path):
    folder = make_model(tmp_path / "model")
    loaded, threads = [], set()

    def load(path: Path):
        version = json.loads((path / CARD_FILE).read_text())["version"]
        loaded.append(version)
        threads.add(threading.get_ident())
        if version == "broken":
            raise OSError("model.keras is truncated")
        return SimpleNamespace(version=version)

    watch = ModelWatch(folder, json.loads((folder / CARD_FILE).read_text())["version"], load)
    assert watch.poll() is None and loaded == []

    install_version(folder, "v2")
    assert settled(watch).version == "v2" and watch.version == "v2"
    assert watch.poll() is None and loaded == ["v2"]

    install_version(folder, "broken")
    assert settled(watch) is None and watch.version == "v2"
    assert watch.poll() is None and loaded == ["v2", "broken"], "a broken model is not retried until a file changes"
    install_version(folder, "v3")
    assert settled(watch).version == "v3"
    assert len(threads) == 1 and threading.get_ident() not in threads, \
        "every load on the one loading thread, none on the caller's (a fresh thread per load kept memory)"


def test_a_good_model_written_after_a_failed_load_is_served(tmp_path, monkeypatch):
    """The card names a new version whose model.keras is corrupt: the load fails and the old model serves; once a
    good model.keras is written under the same card, it is loaded and served (no card change needed)."""
    monkeypatch.setenv("XRAY_PRECISION", "float32")
    monkeypatch.setenv("XRAY_MAX_BATCH_SIZE", "1")
    folder, good = make_model(tmp_path / "model"), make_model(tmp_path / "good")
    watch = ModelWatch(folder, "v1", lambda path: load_predictor(path, serving=True))

    install_version(folder, "v2")
    (folder / MODEL_FILE).write_bytes(b"PK\x03\x04 cut short")
    assert settled(watch) is None and watch.version == "v1", "the corrupt model is not served"
    assert watch.poll() is None and not watch._loading, "the same broken files are not tried again"

    (folder / MODEL_FILE).write_bytes((good / MODEL_FILE).read_bytes())
    served = settled(watch)
    assert served is not None and served.version == "v2" == watch.version
    assert served.predict_greys([np.zeros((64, 64), "uint8")])[0].model_version == "v2"


def test_the_loading_thread_collects_after_a_load_and_after_the_handover(tmp_path, monkeypatch):
    """A replaced Keras model is a web of reference cycles: the loading thread collects them once it has loaded a
    model, and again at the poll after the handover (the caller has swapped the old one out by then)."""
    from model.serving import reload

    folder = make_model(tmp_path / "model")
    collected = []
    monkeypatch.setattr(reload.gc, "collect", lambda: collected.append(threading.get_ident()))
    watch = ModelWatch(folder, "v1", lambda path: SimpleNamespace(version=json.loads((path / CARD_FILE).read_text())
                                                                  ["version"]))
    install_version(folder, "v2")
    assert settled(watch).version == "v2" and len(collected) == 1, "collected after the load"
    assert watch.poll() is None
    drained = threading.Event()
    reload._loader().put(drained.set)
    assert drained.wait(10) and len(collected) == 2, "collected again after the handover"
    assert watch.poll() is None and len(collected) == 2, "once per handover"
    assert len(set(collected)) == 1 and threading.get_ident() not in collected, "on the loading thread"
