import json

import numpy as np
import pytest
from PIL import Image

from model.training.evaluation import evaluate
from model.training.report import write_report


@pytest.fixture
def evaluations():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 30)
    p = np.clip(0.4 * y + 0.6 * rng.random(len(y)), 0, 1)
    sources = ["site A" if i % 3 else "site B" for i in range(len(y))]
    return [
        evaluate("validation", y, p, 0.5, sources=sources, n_boot=50),
        evaluate("test", y[:20], p[:20], 0.5, n_boot=50),
        evaluate("positives only", np.ones(5), [0.2, 0.6, 0.7, 0.8, 0.9], 0.5, n_boot=50),
    ]


HISTORY = {"loss": [0.7, 0.5, 0.4], "val_loss": [0.72, 0.6, 0.55], "auc": [0.6, 0.8, 0.9], "val_auc": [0.55, 0.7, 0.8]}


def test_write_report_writes_every_file(tmp_path, evaluations):
    paths = write_report(tmp_path / "out", evaluations, history=HISTORY, meta={"model": "vgg16", "input_size": 64})
    expected = {"roc.png", "calibration.png", "curves.png", "report.json", "report.md", "confusion_validation.png",
                "confusion_test.png", "confusion_positives_only.png"}
    assert {p.name for p in paths.values()} == expected
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected
    for path in paths.values():
        if path.suffix == ".png":
            with Image.open(path) as image:
                image.verify()
                assert image.format == "PNG"


def test_report_json_round_trips(tmp_path, evaluations):
    meta = {"model": "vgg16", "config": {"dense": [64, 32]}, "seed": np.int64(3)}
    paths = write_report(tmp_path, evaluations, meta=meta)
    report = json.loads(paths["json"].read_text())
    assert report["meta"] == {"model": "vgg16", "config": {"dense": [64, 32]}, "seed": 3}
    assert report["evaluations"] == {e.name: e.metrics for e in evaluations}
    assert "curves" not in paths


def test_markdown_mentions_every_metric_and_links_plots(tmp_path, evaluations):
    paths = write_report(tmp_path, evaluations, history=HISTORY, meta={"model": "vgg16"})
    text = paths["markdown"].read_text()
    for e in evaluations:
        assert f"## {e.name}" in text
        for key in e.metrics:
            assert key in text, key
    for key in evaluations[0].metrics["per_source"]["site A"]:
        assert key in text, key
    for path in paths.values():
        if path.suffix == ".png":
            assert f"({path.name})" in text
    assert "site B" in text and "| model | vgg16 |" in text
    assert "| site A + site B | 60 |" in text  # both sites hold both classes: the within-collection row
    assert "chosen on validation data" in text
    assert "n/a" in text  # the positives-only evaluation has no AUC or specificity


def test_write_report_rejects_bad_input(tmp_path, evaluations):
    with pytest.raises(ValueError, match="at least one"):
        write_report(tmp_path, [])
    with pytest.raises(ValueError, match="distinct"):
        write_report(tmp_path, [evaluations[0], evaluations[0]])
