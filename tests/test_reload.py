"""The app's model watch: a newly installed model is loaded beside the serving one and handed over once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

from model.artifact import CARD_FILE
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
    loaded = []

    def load(path: Path):
        version = json.loads((path / CARD_FILE).read_text())["version"]
        loaded.append(version)
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
    assert watch.poll() is None and loaded == ["v2", "broken"], "a broken model is not retried until the card changes"
