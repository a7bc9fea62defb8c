"""The three model command lines end to end on the real fixture X-rays, with a tiny random-base model."""

import csv
import json
import runpy
import sys

import pytest

from model.commands import crossval, evaluate, predict, train
from model.serving.predictor import load_predictor

REPORT_METRICS = ("accuracy", "loss", "precision", "recall", "sensitivity", "specificity", "f1", "auc", "auc_ci95",
                  "confusion_matrix", "per_source")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import FIXTURE_DIR

    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    train.main(["--data", str(FIXTURE_DIR), "--weights", "none", "--size", "32", "--dense", "8", "--epochs", "2",
                "--views", "1", "--cache", str(cache), "--out", str(out)])
    return out, cache


def test_train_writes_artifact_card_and_report(trained):
    out, _ = trained
    card = json.loads((out / "model_card.json").read_text())
    assert card["input_size"] == 32
    assert 0 <= card["threshold"] <= 1 and card["threshold_rule"]
    assert card["hyperparameters"]["dense"] == [8]
    assert card["training_data"]["train"]["images"] + card["training_data"]["validation"]["images"] + \
        card["training_data"]["test"]["images"] == 24
    assert set(card["metrics"]) == {"validation", "test", "operating_points"}
    points = card["metrics"]["operating_points"]
    assert set(points) == {"Youden's J", "sensitivity >= 0.90", "sensitivity >= 0.95"}
    assert points["sensitivity >= 0.95"]["validation"]["sensitivity"] >= 0.95
    assert set(card["metrics"]["test"]["shortcut_audit"]["all"]) == {"n", "file_facts_auc", "model_auc"}
    assert card["base_weights_origin"].startswith("random")
    for name in ("model.keras", "report.md", "report.json", "roc.png", "confusion_test.png", "curves.png"):
        assert (out / name).is_file(), name
    predictor = load_predictor(out)
    assert predictor.threshold == card["threshold"]


def test_train_can_set_the_threshold_for_unseen_sources_on_reference_normals(trained, tmp_path, fixture_dir):
    """The threshold leaves the transfer point's share of the reference normals below it, as the served model
    scores them; a reference file that is also a training image is left out."""
    from PIL import Image, ImageOps

    _, cache = trained
    normals = sorted((fixture_dir / "normal").iterdir())
    reference = tmp_path / "reference" / "normal"
    reference.mkdir(parents=True)
    for path in normals:
        ImageOps.mirror(Image.open(path)).save(reference / f"mirrored_{path.stem}.png")
    (reference / normals[0].name).write_bytes(normals[0].read_bytes())
    out = tmp_path / "run"
    train.main(["--data", str(fixture_dir), "--weights", "none", "--size", "32", "--dense", "8", "--epochs", "2",
                "--views", "1", "--cache", str(cache), "--out", str(out), "--target-sensitivity", "0.9",
                "--operating-point", "unseen_sources", "--reference-normals", str(reference.parent)])
    card = json.loads((out / "model_card.json").read_text())
    transfer = card["transfer"]
    assert transfer["n_reference"] == len(normals) and transfer["target_sensitivity"] == 0.9
    assert transfer["sensitivity"] >= 0.9 and transfer["n_sources"] >= 2
    assert card["threshold_rule"].startswith("sensitivity >= 0.9 on COVID-19 films from hospitals")
    predictor = load_predictor(out)
    probs = [predictor.predict(path).probability for path in sorted(reference.glob("mirrored_*"))]
    assert sum(p < card["threshold"] for p in probs) / len(probs) == pytest.approx(transfer["specificity"])
    assert "expected at a new hospital" in (out / "report.md").read_text()


def test_unseen_sources_needs_reference_normals(tmp_path, fixture_dir, capsys):
    from model.commands.cli import USAGE_ERROR, run

    status = run(train.main, ["--data", str(fixture_dir), "--weights", "none", "--size", "32", "--out", str(tmp_path),
                              "--target-sensitivity", "0.9", "--operating-point", "unseen_sources"])
    assert status == USAGE_ERROR
    assert "--operating-point unseen_sources needs --reference-normals DIR" in capsys.readouterr().err
    assert not (tmp_path / "model_card.json").exists()


def test_evaluate_reports_every_metric_and_plots(trained, tmp_path, fixture_dir, capsys):
    out, cache = trained
    evaluate.main(["--model", str(out), "--data", str(fixture_dir), "--out", str(tmp_path), "--cache", str(cache)])
    report = json.loads((tmp_path / "report.json").read_text())
    (metrics,) = report["evaluations"].values()
    assert metrics["n"] == 24
    for key in REPORT_METRICS:
        assert key in metrics, key
    assert set(metrics["per_source"]) == {"hida6/covid-chestxray-dataset",
                                          "rtchanon/Machine-Learning-for-COVID-19-detection-from-chest-X-RAYS"}
    markdown = (tmp_path / "report.md").read_text()
    assert "specificity" in markdown.lower() and "auc" in markdown.lower()
    assert (tmp_path / "roc.png").is_file() and list(tmp_path.glob("confusion_*.png"))
    assert json.loads(capsys.readouterr().out.splitlines()[0])["n"] == 24


def test_predict_reports_good_files_and_skips_bad_ones(trained, tmp_path, fixture_dir, capsys):
    out, _ = trained
    good = sorted((fixture_dir / "covid").iterdir())[:2] + sorted((fixture_dir / "normal").iterdir())[:1]
    bad_text = tmp_path / "notes.png"
    bad_text.write_text("this is not an x-ray")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files = [good[0], bad_text, good[1], empty, good[2]]
    status = predict.main([str(f) for f in files] + ["--model", str(out), "--csv", str(tmp_path / "out.csv")])
    captured = capsys.readouterr()
    assert status == 1
    lines = captured.out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in good]
    assert all(0.0 <= float(line.split("\t")[1]) <= 1.0 for line in lines)
    assert "not an image" in captured.err and "empty" in captured.err
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert [bool(r["error"]) for r in rows] == [False, True, False, True, False]


def test_crossval_holds_out_each_patient_once_with_the_cards_settings(trained, tmp_path, fixture_dir, capsys):
    out, cache = trained
    crossval.main(["--data", str(fixture_dir), "--weights", "none", "--size", "32", "--views", "1", "--folds", "3",
                   "--hparams", str(out / "model_card.json"), "--cache", str(cache), "--out", str(tmp_path)])
    result = json.loads((tmp_path / "crossval.json").read_text())
    assert result["meta"]["dense"] == [8] and result["meta"]["epochs"] == 2
    assert result["summary"]["n_folds"] == 3 and result["summary"]["pooled"]["n"] == 24
    assert sum(fold["n"] for fold in result["summary"]["folds"]) == 24
    assert json.loads(capsys.readouterr().out.splitlines()[0])["n"] == 24


def test_grouped_folds_never_split_a_patient(fixture_dir):
    import numpy as np

    from model.data import scan_folder
    from model.features import Features
    from model.training.folds import grouped_folds

    examples = scan_folder(fixture_dir)
    features = Features(np.zeros((len(examples), 1, 1)), np.array([e.label for e in examples], "float32"), examples)
    held_out = []
    for train_idx, test_idx in grouped_folds(features, 3, seed=0):
        train_patients = {examples[i].patient_id for i in train_idx}
        assert not train_patients & {examples[i].patient_id for i in test_idx}
        held_out += list(test_idx)
    assert sorted(held_out) == list(range(len(examples)))


@pytest.mark.parametrize("module", ["model.train", "model.evaluate", "model.predict", "model.crossval",
                                    "model.compare", "model.promote",
                                    "model.offline_weights"])
def test_command_lines_have_help(module, capsys, monkeypatch):
    """`python -m MODULE --help`, run as -m runs it (runpy, as __main__), in this process: the imports are shared."""
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "usage:" in out and "--" in out


def test_each_flag_keeps_its_name_and_sets_its_config_field(tmp_path):
    from model.commands.cli import config_from_args
    from model.config import ModelConfig

    argv = ["--data", str(tmp_path), "--size", "64", "--weights", "none", "--seed", "7", "--target-sensitivity", "0.9",
            "--crop", "0.05", "--harmonize", "48", "--equalize", "clahe", "--feature-layers", "block4", "block3",
            "--pooling", "avgmax", "--head", "logistic", "--dense", "16", "4", "--dropout", "0.25", "--l2", "0.5",
            "--optimizer", "adam", "--lr", "0.003", "--epochs", "3", "--batch-size", "8", "--class-weight"]
    expected = ModelConfig(input_size=64, weights="none", seed=7, target_sensitivity=0.9, crop=0.05, harmonize=48,
                           equalize="clahe", feature_layers=("block3", "block4"), pooling="avgmax", head="logistic",
                           dense=(16, 4), dropout=0.25, l2=0.5, optimizer="adam", learning_rate=0.003, epochs=3,
                           batch_size=8, class_weight=True)
    assert config_from_args(train.parse_args(argv)) == expected
    assert config_from_args(train.parse_args(["--data", str(tmp_path)])) == ModelConfig()


def test_hparams_replace_the_head_but_keep_the_base_size_and_seed(tmp_path):
    from model.commands.cli import config_from_args
    from model.config import ModelConfig

    saved = ModelConfig(input_size=128, weights="imagenet", seed=3, pooling="avg", dense=(8,), epochs=4, crop=0.1)
    (tmp_path / "card.json").write_text(json.dumps({"hyperparameters": saved.to_dict()}))
    args = train.parse_args(["--data", str(tmp_path), "--hparams", str(tmp_path / "card.json"), "--size", "32",
                             "--weights", "none", "--epochs", "9"])
    assert config_from_args(args) == ModelConfig(input_size=32, weights="none", seed=0, pooling="avg", dense=(8,),
                                                 epochs=4, crop=0.1)
