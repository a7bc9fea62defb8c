"""The Keras Tuner search: space, objectives, CLI resume and export, distributed chief and workers."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import keras_tuner
import numpy as np
import pytest

from model.commands.cli import UsageError
from model.config import ModelConfig
from model.data import Example
from model.features import Features, SplitFeatures
from model.serving.predictor import load_predictor
from tuning.__main__ import RESTART, main
from tuning.report import TrialRecord, ranked, write_search_report
from tuning.objectives import collection_auc
from tuning.options import OBJECTIVES
from tuning.search import ENV, choose_trial, make_tuner, search, set_role, trial_records
from tuning.space import (
    SEED_POINT,
    SPACE,
    LogRange,
    config_of,
    declare,
    narrow,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--weights", "none", "--size", "32", "--tuner", "random", "--space", "epochs=1,2", "dense=32,16-8",
        "harmonize=0,48", "equalize=none,global", "crop=0.0", "feature_layers=block5,block3+block4"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One feature cache for the module: only the first search runs the base."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture
def clean_env(monkeypatch):
    """No distributed-mode variables, and none left behind (setenv first, so that monkeypatch also removes the
    ones set_role writes later)."""
    for name in ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def cli(fixture_dir: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    """The fixture set doubles as the external folder here: enough to exercise the default objective."""
    return ["--data", str(fixture_dir), "--external", str(fixture_dir), "--out", str(out), "--cache", str(cache),
            *FAST, *extra]


@dataclass
class StaticBank:
    """A FeatureBank stand-in that gives every configuration the same synthetic features."""

    sets_: SplitFeatures
    has_external: bool = True

    def sets(self, config: ModelConfig) -> SplitFeatures:
        return self.sets_

    def external(self, config: ModelConfig) -> Features:
        return self.sets_.validation

    def feature_shape(self, config: ModelConfig) -> tuple[int, ...]:
        return tuple(self.sets_.train.x.shape[2:])


def trial_files(project: Path) -> dict[str, float]:
    return {str(p.relative_to(project)): p.stat().st_mtime_ns for p in sorted(project.glob("trial_*/*"))}


def synthetic_sets(seed: int = 0) -> SplitFeatures:
    """Features of shape (1, 1, 8) whose mean shifts with the label: learnable, but not perfectly."""
    rng = np.random.default_rng(seed)

    def features(n: int) -> Features:
        y = (np.arange(n) % 2).astype("float32")
        x = rng.normal(size=(n, 2, 1, 1, 8)) + 0.7 * y[:, None, None, None, None]
        examples = [Example(Path(f"{i}.png"), int(y[i]), "covid" if y[i] else "normal", str(i // 2), "synthetic")
                    for i in range(n)]
        return Features(x.astype("float32"), y, examples)

    return SplitFeatures(train=features(48), validation=features(24), test=features(0))


def contains(space: dict, point: dict) -> bool:
    """Whether every coordinate of point is a value the space can take."""
    def inside(spec, value) -> bool:
        return spec.low <= value <= spec.high if isinstance(spec, LogRange) else value in spec

    return set(point) == set(space) and all(inside(space[name], value) for name, value in point.items())


def test_seed_setting_is_a_point_of_the_space_and_its_default():
    assert contains(SPACE, SEED_POINT)
    assert SEED_POINT == {"optimizer": "sgd", "learning_rate": 0.01, "epochs": 20, "batch_size": 32,
                          "pooling": "flatten", "dense": "1024-512", "dropout": 0.0, "class_weight": False,
                          "harmonize": 0, "equalize": "none", "crop": 0.0, "feature_layers": "block5",
                          "head": "dense", "l2": 0.0}
    assert config_of(SEED_POINT, ModelConfig(seed=3)) == ModelConfig(seed=3)
    assert declare(keras_tuner.HyperParameters(), SPACE) == SEED_POINT
    assert not contains(SPACE, {**SEED_POINT, "learning_rate": 0.5})


def test_grid_search_starts_at_the_seed_setting_and_hyperband_owns_the_epochs(tmp_path, clean_env):
    grid = make_tuner("grid", StaticBank(synthetic_sets()), ModelConfig(input_size=32, weights="none"), tmp_path / "grid", max_trials=2)
    assert grid.oracle.create_trial("probe").hyperparameters.values == SEED_POINT
    hyperband = make_tuner("hyperband", StaticBank(synthetic_sets()), ModelConfig(input_size=32, weights="none"), tmp_path / "hb")
    values = hyperband.oracle.create_trial("probe").hyperparameters.values
    assert "epochs" not in values and values["tuner/epochs"] <= max(SPACE["epochs"]) == hyperband.oracle.max_epochs


def test_narrow_parses_values_and_rejects_bad_ones():
    space = narrow(SPACE, ["epochs=3,5", "learning_rate=1e-3:1e-2", "class_weight=true", "dense=64-32"])
    assert space["epochs"] == (3, 5) and space["learning_rate"] == LogRange(1e-3, 1e-2)
    assert space["class_weight"] == (True,) and space["dense"] == ("64-32",)
    for bad in ("speed=1", "optimizer=nadam", "epochs=0", "dense=12-x", "learning_rate=1:0.1", "dropout=1.0", "epochs="):
        with pytest.raises(ValueError, match="--space"):
            narrow(SPACE, [bad])


def test_roles_from_flags_and_bad_addresses(clean_env):
    assert set_role() == "single"
    assert set_role(worker="10.0.0.1:8000", worker_id="gpu1") == "worker"
    assert os.environ["KERASTUNER_TUNER_ID"] == "worker-gpu1" and os.environ["KERASTUNER_ORACLE_PORT"] == "8000"
    assert set_role(chief="0.0.0.0:8000") == "chief"
    for flags in ({"chief": "8000"}, {"worker": "host:8000"}, {"worker": "h:1", "worker_id": "chief2"},
                  {"chief": "h:1", "worker": "h:1", "worker_id": "a"}):
        with pytest.raises(ValueError):
            set_role(**flags)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_best_trial_is_best_by_the_objective_direction(tmp_path, clean_env, name):
    space = narrow(SPACE, ["epochs=2", "dense=16", "batch_size=16"])
    bank = StaticBank(synthetic_sets())
    tuner = make_tuner("random", bank, ModelConfig(input_size=32, weights="none"), tmp_path, name, 2, space)
    assert search(tuner) == 2
    pick = max if OBJECTIVES[name] == "max" else min
    per_trial = {r.trial_id: pick(r.history[name]) for r in trial_records(tuner)}
    assert len(set(per_trial.values())) > 1, "trials must differ for the test to mean anything"
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.trial_id == pick(per_trial, key=per_trial.get)
    assert best.score == pytest.approx(per_trial[best.trial_id])


def test_trials_external_auc_cannot_tell_apart_are_chosen_by_the_within_collection_auc(tmp_path, clean_env):
    space = narrow(SPACE, ["epochs=1,2,3", "dense=16,8", "batch_size=16"])
    tuner = make_tuner("random", StaticBank(synthetic_sets()), ModelConfig(input_size=32, weights="none"), tmp_path,
                       "external_auc", 4, space)
    search(tuner)
    records = [r for r in trial_records(tuner) if r.score is not None]
    _, by_validation = choose_trial(tuner, records)
    assert "trials have external AUC intervals" in by_validation, "24 external films must leave trials tied"
    tied = int(by_validation.split(" trials")[0])
    auc = {r.trial_id: 0.5 + 0.1 * k for k, r in enumerate(sorted(records, key=lambda r: -r.score))}

    def within(record: TrialRecord) -> dict:
        return {"auc": auc[record.trial_id], "auc_ci95": [auc[record.trial_id] - 0.15, auc[record.trial_id] + 0.05],
                "n": 30}

    trial_id, why = choose_trial(tuner, records, within)
    tied_ids = [r.trial_id for r in records if r.at_best["external_auc_high"] >= max(
        records, key=lambda r: r.score).at_best["external_auc_low"]]
    assert len(tied_ids) == tied >= 2
    assert trial_id == max(tied_ids, key=auc.get)
    assert "COVID-19 against other pneumonias" in why and "runner-up" in why and "lies inside" in why
    undefined_for_one, _ = choose_trial(tuner, records, lambda r: None if r.trial_id == trial_id else within(r))
    assert undefined_for_one == choose_trial(tuner, records)[0]


def finished_external_auc_search(*trials: tuple[str, float, float, float, float]):
    """A stand-in for a tuner whose external_auc search is over, and its records, from (trial id, external AUC,
    its interval's low and high, validation AUC) per trial."""
    records = [TrialRecord(i, "COMPLETED", {}, auc, at_best={"external_auc": auc, "external_auc_low": low,
                                                             "external_auc_high": high, "val_auc": val})
               for i, auc, low, high, val in trials]
    best = max(records, key=lambda r: r.score)
    oracle = SimpleNamespace(objective=keras_tuner.Objective("external_auc", "max"),
                             get_best_trials=lambda n: [SimpleNamespace(trial_id=best.trial_id, score=best.score)])
    return SimpleNamespace(oracle=oracle), records


def test_tied_trials_go_to_the_higher_validation_auc_then_the_higher_external_auc():
    tuner, records = finished_external_auc_search(
        ("0", 0.80, 0.70, 0.90, 0.90),  # the best external AUC; the others' intervals must reach its low, 0.70
        ("1", 0.74, 0.62, 0.86, 0.96),
        ("2", 0.76, 0.64, 0.88, 0.96),  # tied with 1 on validation AUC, higher external AUC
        ("3", 0.60, 0.50, 0.68, 0.99),  # the best validation AUC, but its interval stops below 0.70: not tied
    )
    trial_id, why = choose_trial(tuner, records)
    assert trial_id == "2" and "3 trials have external AUC intervals" in why
    within = {"0": 0.70, "1": 0.85, "2": 0.85, "3": 0.99}
    by_collection, _ = choose_trial(tuner, records, lambda r: {"auc": within[r.trial_id], "n": 30,
                                                               "auc_ci95": [within[r.trial_id] - 0.1, 1.0]})
    assert by_collection == "2", "1 and 2 tie within the collection too: the higher external AUC decides"


def test_collection_auc_scores_only_sources_holding_both_classes():
    sets = synthetic_sets()
    normals = sets.validation.take(np.flatnonzero(sets.validation.y == 0))
    only_normals = Features(normals.x, normals.y, [replace(e, source="normals archive") for e in normals.examples])
    config = ModelConfig(input_size=32, weights="none", epochs=2, dense=(16,))
    within = collection_auc(sets.train + only_normals, config)
    assert within["sources"] == ["synthetic"] and within["n"] == len(sets.train.y)
    assert 0.0 <= within["auc"] <= 1.0 and within["auc_ci95"][0] <= within["auc"] <= within["auc_ci95"][1]
    assert collection_auc(only_normals, config) is None


def test_report_ranks_by_direction_and_lists_every_trial(tmp_path):
    records = [
        TrialRecord("0", "COMPLETED", dict(SEED_POINT), 0.7, 3, 1.0, {"loss": [0.9, 0.8], "val_loss": [0.9, 0.7]}),
        TrialRecord("1", "COMPLETED", {**SEED_POINT, "optimizer": "adam", "learning_rate": 1e-3}, 0.4, 1, 2.0),
        TrialRecord("2", "FAILED", {**SEED_POINT, "optimizer": "rmsprop"}, None),
    ]
    assert [r.trial_id for r in ranked(records, "max")] == ["0", "1"]
    assert [r.trial_id for r in ranked(records, "min")] == ["1", "0"]
    paths = write_search_report(tmp_path, records, "val_loss", "min", SEED_POINT)
    text = paths["markdown"].read_text()
    assert "Trial 1: val_loss = 0.4" in text
    assert all(re.search(rf"^\| {i} \| ", text, re.M) for i in "012")
    assert paths["optimizer_lr"].stat().st_size > 0 and paths["curves"].stat().st_size > 0


@pytest.fixture
def growing_memory(monkeypatch):
    """Resident memory as the tuner reads it grows by 20% of its first figure at every reading: the restart point is
    the rule's, whatever the machine's load does to the real figure."""
    sizes = itertools.count(1000, 200)
    monkeypatch.setattr("tuning.search.resident_mib", lambda: float(next(sizes)))


def test_cli_exports_a_loadable_artifact_and_a_rerun_repeats_no_trial(fixture_dir, tmp_path, cache, capsys, clean_env,
                                                                      growing_memory):
    out = tmp_path / "run"
    command = cli(fixture_dir, out, cache, "--max-trials", "3", "--restart-growth", "0.1")
    assert main(command) == RESTART
    first = capsys.readouterr().err
    assert len(re.findall(r"^trial \d+ completed in", first, re.M)) == 2 and "exported" not in first
    assert main(command) is None
    second = capsys.readouterr().err
    assert len(re.findall(r"^trial \d+ completed in", second, re.M)) == 1 and "exported trial" in second
    files = trial_files(out / "search")
    assert len({name.split("/")[0] for name in files}) == 3

    predictor = load_predictor(out / "best")
    prediction = predictor.predict(next((fixture_dir / "covid").iterdir()))
    assert 0.0 <= prediction.probability <= 1.0 and predictor.input_size == 32
    export = json.loads((out / "export.json").read_text())
    assert predictor.card.config.to_dict() == export["config"]
    kept = [p.parent.name for p in (out / "search").glob("trial_*/checkpoint*")]
    assert kept == [f"trial_{export['trial']}"]
    assert f"Trial {export['trial']}:" in (out / "report.md").read_text()
    assert (out / "best" / "report.md").is_file() and (out / "optimizer_lr.png").is_file()

    assert main(command) is None
    third = capsys.readouterr().err
    assert "ran 0 trials" in third and "completed in" not in third and "nothing to export" in third
    assert trial_files(out / "search") == files

    with pytest.raises(UsageError, match="other objective"):
        main(cli(fixture_dir, out, cache, "--max-trials", "3", "--objective", "val_loss"))


GROWING_COMMAND = """
import itertools, sys
import tuning.search
from tuning.__main__ import command, run
sizes = itertools.count(1000, 200)
tuning.search.resident_mib = lambda: float(next(sizes))
sys.exit(run(command))
"""
"""python -m tuning whose memory figure grows as growing_memory's does (the fresh process it restarts is plain)."""


def test_the_command_restarts_itself_when_memory_grows_and_finishes_the_search(fixture_dir, tmp_path, cache):
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    command = [sys.executable, "-c", GROWING_COMMAND, *cli(fixture_dir, tmp_path / "run", cache, "--max-trials", "2"),
               "--restart-growth", "0.1", "--overwrite"]
    log = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300).stderr
    assert log.count("continuing in a fresh process") == 1, log[-3000:]
    assert len(re.findall(r"^trial \d+ completed", log, re.M)) == 2
    assert "ran 0 trials in this run; 2 recorded" in log and log.count("exported trial") == 1


def test_chief_and_two_workers_record_every_trial_once_and_export_once(fixture_dir, tmp_path, cache):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    command = [sys.executable, "-m", "tuning", *cli(fixture_dir, tmp_path / "run", cache, "--max-trials", "3"),
               "--space", "epochs=1", "dense=16", "--restart-growth", "0"]
    roles = {"chief": ["--chief", f"127.0.0.1:{port}"]}
    roles |= {f"worker-{w}": ["--worker", f"127.0.0.1:{port}", "--worker-id", w] for w in "ab"}
    processes = {
        name: subprocess.Popen(command + flags, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        for name, flags in roles.items()
    }
    try:
        logs = {name: p.communicate(timeout=420)[0] for name, p in processes.items()}
    finally:
        for p in processes.values():
            p.kill()
    for name, p in processes.items():
        assert p.returncode == 0, f"{name} failed:\n{logs[name][-3000:]}"

    trials = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "search").glob("trial_*/trial.json"))]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 3
    ran = [i for name in ("worker-a", "worker-b") for i in re.findall(r"^trial (\d+) completed", logs[name], re.M)]
    assert sorted(ran) == sorted(t["trial_id"] for t in trials)
    assert "completed in" not in logs["chief"]
    assert logs["chief"].count("exported trial") == 1
    assert all("exported" not in logs[name] for name in ("worker-a", "worker-b"))
    assert load_predictor(tmp_path / "run" / "best").input_size == 32


def test_each_tuner_name_the_command_line_offers_builds_that_tuner():
    from tuning import options, search

    assert list(search.TUNERS) == list(options.TUNER_NAMES)
    assert all(tuner.__name__.lower().startswith(name) for name, tuner in search.TUNERS.items())
