"""A broken input gate file stops the app's start-up with one line and exit status 2, like a broken model file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import APP, REPO, add_gate, make_model


def cut_short(folder: Path) -> None:
    add_gate(folder)
    (folder / "gate.npz").write_bytes((folder / "gate.npz").read_bytes()[:300])


def removed(folder: Path) -> None:
    add_gate(folder)
    (folder / "gate.npz").unlink()


def of_another_network(folder: Path) -> None:
    add_gate(folder, width=7)


CASES = {cut_short: "(BadZipFile", removed: "records an input gate but", of_another_network: "over 7 features"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("damage", CASES, ids=lambda damage: damage.__name__)
def test_a_broken_gate_file_is_one_clear_line_and_exit_status_2(model_dir, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    damage(folder)
    env = {**os.environ, "MODEL_PATH": str(folder), "XRAY_FEEDBACK_DIR": str(tmp_path / "fb"), "PORT": "1"}
    done = subprocess.run([sys.executable, str(APP)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    [line] = [x for x in done.stderr.splitlines() if "Cannot start" in x]
    assert "gate.npz" in line and CASES[damage] in line
