"""The command lines' convention as a user meets it: a mistake is one line on stderr and exit status 2, found before
TensorFlow starts and before anything is written; TensorFlow's own start-up lines never reach the user; a folder is
predicted file by file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.images import EXTENSIONS
from tests.conftest import FIXTURE_DIR

REPO = Path(__file__).resolve().parents[1]
MISTAKES = """
import contextlib, io, json, runpy, sys
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    sys.argv = ["python -m " + argv[0], *argv[1:]]
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            code = stop.code
    results.append({"code": code, "stderr": err.getvalue(), "tensorflow": "tensorflow" in sys.modules})
print(json.dumps(results))
"""
TENSORFLOW_LINES = ("oneDNN", "absl", "cpu_feature_guard", "I0000", "rebuild TensorFlow")


def without_tensorflow_settings() -> dict[str, str]:
    """This environment without TF_CPP_MIN_LOG_LEVEL, as a user's shell has it."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def run_mistakes(commands: list[list[str]]) -> list[dict]:
    """Run each command (module, then arguments) as `python -m` runs it, all in one fresh interpreter, in order."""
    done = subprocess.run([sys.executable, "-c", MISTAKES, json.dumps(commands)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=without_tensorflow_settings())
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_mistakes_are_one_line_each_exit_2_before_tensorflow_starts_and_write_nothing(tmp_path):
    out, csv = tmp_path / "out", tmp_path / "examples.csv"
    missing = str(tmp_path / "missing")
    commands = {
        "tuning": ["tuning", "--max-trials", "zero"],
        "tuning's inputs": ["tuning", "--data", missing, "--weights", "vgg.h5", "--out", str(out)],
        "train": ["model.train", "--data", str(FIXTURE_DIR), "--size", "abc", "--out", str(out)],
        "predict": ["model.predict", "missing.png", str(tmp_path / "other.jpg")],
        "data": ["model.data", "--data", str(FIXTURE_DIR), "--feedback", missing, "--csv", str(csv)],
        "compare": ["model.compare", missing, "--data", str(FIXTURE_DIR)],
        "promote": ["model.promote", "--froce"],
        "promote's inputs": ["model.promote", missing, "--data", str(FIXTURE_DIR)],
        "feedback": ["feedback", "withdraw", "first", "--reader", "ann"],
        "deploy": ["space.deploy", "--spcae", "someone/xray-covid"],
        "offline weights": ["model.offline_weights", "--out", str(tmp_path / "vgg.h5")],
    }
    results = dict(zip(commands, run_mistakes(list(commands.values()))))
    expected_lines = {"tuning's inputs": 2, "predict": 2}
    for name, result in results.items():
        lines = result["stderr"].splitlines()
        assert result["code"] == 2 and len(lines) == expected_lines.get(name, 1), (name, result)
        assert not result["tensorflow"], f"{name} imported TensorFlow before saying what was wrong"
    assert "invalid int value: 'zero' (see python -m tuning --help)" in results["tuning"]["stderr"]
    assert results["tuning's inputs"]["stderr"].splitlines() == [
        f"error: --data {missing}: no such folder",
        "error: --weights vgg.h5: no such file (give imagenet, none or a VGG-16 no-top weights file, such as python -m "
        "model.offline_weights writes)"]
    assert results["predict"]["stderr"].splitlines() == [
        "error: missing.png: no such file or folder", f"error: {tmp_path / 'other.jpg'}: no such file or folder"]
    assert f"--feedback {missing}: no such folder" in results["data"]["stderr"]
    assert "unrecognized arguments: --froce (see python -m model.promote --help)" in results["promote"]["stderr"]
    assert results["promote's inputs"]["stderr"] == f"error: candidate {missing}: no such file or folder\n"
    assert "invalid int value: 'first' (see python -m feedback withdraw --help)" in results["feedback"]["stderr"]
    assert results["deploy"]["stderr"] == ("python -m space.deploy: error: unrecognized arguments: --spcae "
                                           "someone/xray-covid (see python -m space.deploy --help)\n")
    assert not out.exists() and not csv.exists()


COMMANDS = ("model.train", "model.evaluate", "model.predict", "model.crossval", "model.compare", "model.promote",
            "model.train_gate", "model.train_lungs", "model.data", "model.offline_weights", "tuning")
"""The commands whose flags need TensorFlow's work: asking them for --help must not start it."""


def test_help_starts_no_tensorflow_and_prints_nothing_on_stderr():
    results = dict(zip(COMMANDS, run_mistakes([[command, "--help"] for command in COMMANDS])))
    started = [name for name, result in results.items() if result["tensorflow"]]
    assert not started, f"{started[0]} --help imported TensorFlow"
    assert all(result["code"] in (0, None) and not result["stderr"] for result in results.values()), results


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.server import make_model

    return make_model(tmp_path_factory.mktemp("model"))


def test_predict_takes_folders_recursively_in_sorted_order_and_prints_no_tensorflow_lines(tiny_model, tmp_path):
    films = sorted((FIXTURE_DIR / "covid").iterdir())
    folder = tmp_path / "films"
    layout = {"b.png": films[0], "a/c.jpg": films[1], "a/masks/mask.png": films[2], ".hidden.png": films[2],
              "notes.txt": films[2]}
    for name, source in layout.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(source.read_bytes())
    single = films[3]
    assert ".txt" not in EXTENSIONS
    done = subprocess.run([sys.executable, "-m", "model.predict", str(folder), str(single), "--model", str(tiny_model),
                           "--precision", "float32"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=without_tensorflow_settings())
    assert done.returncode == 0, done.stderr[-2000:]
    predicted = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert predicted == [str(folder / "a/c.jpg"), str(folder / "b.png"), str(single)]
    assert not [line for line in done.stderr.splitlines() if any(text in line for text in TENSORFLOW_LINES)], \
        done.stderr
