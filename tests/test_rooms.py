"""The rooms of the data flow stay apart, and the model card is a checked contract."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model.architecture import OPTIMIZER_CONSTRUCTORS
from model.artifact import CARD_FILE, DEFAULT_ARTIFACT, load_card
from model.card import REQUIRED, CardError, ModelCard, new_card
from model.config import OPTIMIZERS, ModelConfig

REPO = Path(__file__).resolve().parents[1]
BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
"""


def import_with_blocked(modules: list[str], blocked: list[str]) -> subprocess.CompletedProcess:
    """Import `modules` in a fresh interpreter in which importing any of `blocked` fails."""
    code = f"BLOCKED = {blocked!r}\n{BLOCKER}\n" + "".join(f"import {m}\n" for m in modules)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_serving_imports_nothing_from_training():
    serving = ["model.serving.predictor", "model.serving.cache", "model.serving.gradcam", "model.serving.runtime",
               "model.serving.overlay"]
    result = import_with_blocked(serving, ["model.training", "tuning", "keras_tuner", "sklearn"])
    assert result.returncode == 0, result.stderr[-2000:]


def test_what_any_engine_shares_needs_no_network_library():
    shared = ["model.preprocessing", "model.serving.overlay", "model.serving.runtime", "model.calibration",
              "model.gate"]
    result = import_with_blocked(shared, ["tensorflow", "keras"])
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_core_and_its_rooms_never_import_the_command_lines():
    below = ["model.data", "model.preprocessing", "model.features", "model.artifact", "model.training.export",
             "model.training.gate_fit", "model.serving.predictor", "model.serving.batching", "model.serving.reload"]
    result = import_with_blocked(below, ["model.commands", "tuning", "space", "app"])
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_blocker_does_block():
    result = import_with_blocked(["model.training.head"], ["model.training"])
    assert result.returncode != 0 and "model.training is blocked" in result.stderr


def test_feedback_and_model_never_import_each_other():
    feedback = ["feedback", "feedback.export", "feedback.review", "feedback.__main__"]
    assert import_with_blocked(feedback, ["model"]).returncode == 0
    model = ["model.training.export", "model.training.scoring", "model.training.split_features", "model.training.folds",
             "model.serving.predictor", "model.data"]
    assert import_with_blocked(model, ["feedback", "space", "tuning"]).returncode == 0


def test_the_service_imports_no_web_framework():
    """The page and the REST API are adapters over space.service: it works on plain values, with neither door's
    library."""
    web = ["gradio", "gradio_client", "fastapi", "starlette"]
    result = import_with_blocked(["space.service", "space.clients"], web)
    assert result.returncode == 0, result.stderr[-2000:]


def test_settings_and_the_handoff_import_nothing_of_the_project():
    result = import_with_blocked(["settings", "handoff"], ["model", "feedback", "space", "tuning", "app"])
    assert result.returncode == 0, result.stderr[-2000:]


def product_sources() -> list[Path]:
    """Every Python file of the product: the tree less tests/ and benchmarks/."""
    return [p for p in REPO.rglob("*.py") if p.relative_to(REPO).parts[0] not in ("tests", "benchmarks")
            and ".git" not in p.parts]


def test_sqlite_is_imported_only_under_feedback():
    importing = {p.relative_to(REPO).as_posix() for p in product_sources()
                 if re.search(r"^\s*(import sqlite3|from sqlite3 )", p.read_text(), re.MULTILINE)}
    assert importing and all(name.startswith("feedback/") for name in importing), importing


def test_the_environment_is_read_only_by_settings_and_the_tuner_s_roles():
    reading = {p.relative_to(REPO).as_posix() for p in product_sources()
               if re.search(r"os\.environ|getenv|environ\[", p.read_text())}
    assert reading == {"settings.py", "tuning/search.py"}


def test_tuning_imports_training_and_core_only():
    result = import_with_blocked(["tuning.search", "tuning.space", "tuning.report"], ["model.serving", "space", "app"])
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_optimizer_name_has_a_constructor():
    assert set(OPTIMIZER_CONSTRUCTORS) == set(OPTIMIZERS)


def card_dict() -> dict:
    return new_card(ModelConfig(weights="none", input_size=32), 0.42, "Youden's J on validation", {}, {}).to_dict()


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_a_card_missing_a_required_field_names_it(field, tmp_path):
    d = card_dict()
    del d[field]
    (tmp_path / CARD_FILE).write_text(json.dumps(d))
    with pytest.raises(CardError, match=f"'{field}'"):
        load_card(tmp_path)


def test_a_card_with_a_mistyped_or_impossible_field_says_so():
    with pytest.raises(CardError, match="'threshold' should be a number"):
        ModelCard.from_dict({**card_dict(), "threshold": "0.4"})
    with pytest.raises(CardError, match="in \\[0, 1\\]"):
        ModelCard.from_dict({**card_dict(), "threshold": 1.5})
    with pytest.raises(CardError, match="'hyperparameters' is invalid"):
        ModelCard.from_dict({**card_dict(), "hyperparameters": {"pooling": "median"}})
    with pytest.raises(CardError, match="not valid JSON"):
        ModelCard.from_json("{")


def test_a_card_round_trips_through_json():
    card = dataclasses.replace(ModelCard.from_dict(card_dict()), version="abc", notes="n")
    assert ModelCard.from_json(card.to_json()) == card


def test_the_shipped_card_loads_as_a_model_card():
    card = load_card(DEFAULT_ARTIFACT)
    assert card.version and card.config.input_size == card.input_size


def test_calibration_and_history_are_optional_and_checked():
    d = card_dict()
    del d["calibration"], d["history"]
    card = ModelCard.from_dict(d)
    assert card.calibration == {} and card.history == []
    with pytest.raises(CardError, match="'history' should be a list"):
        ModelCard.from_dict({**card_dict(), "history": {"version": "x"}})
    entry = {"action": "promote", "version": "abc", "replaced": "", "verdict": "better", "data": "d", "at": "t"}
    assert ModelCard.from_json(dataclasses.replace(card, history=[entry]).to_json()).history == [entry]


def entry_point_of(path: Path) -> bool:
    """Whether `path` is a thin `python -m model.X` entry point into model/commands/X.py (its command's namesake)."""
    return f"from model.commands.{path.stem} import main" in path.read_text() and len(path.read_text()) < 400


def test_no_module_name_stands_twice_under_model():
    names = [path.stem for path in (REPO / "model").rglob("*.py")
             if path.stem not in ("__init__", "__main__") and "artifacts" not in path.parts and not entry_point_of(path)]
    assert sorted({name for name in names if names.count(name) > 1}) == []
