"""The fine-tuning stage through model.train on the fixture X-rays: which blocks it trains, what the card records,
the precision it runs in, and resuming after an interruption."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from model.commands import train
from model.architecture import build_base
from model.artifact import load_artifact
from model.serving.predictor import load_predictor
from model.training import finetune

SMALL = ["--weights", "none", "--size", "32", "--dense", "8", "--epochs", "1", "--views", "0", "--no-cache"]


def train_args(fixture_dir, out, *extra: str) -> list[str]:
    return ["--data", str(fixture_dir), *SMALL, "--out", str(out), *extra]


def test_fine_tuning_trains_only_its_blocks_in_the_features_precision_and_the_card_says_so(fixture_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(train_args(fixture_dir, out, "--precision", "bfloat16", "--fine-tune-epochs", "1",
                                 "--fine-tune-blocks", "block5", "--fine-tune-lr", "1e-3")) == 0
    model, card = load_artifact(out)
    assert (card.precision, card.config.fine_tune_epochs, card.config.fine_tune_blocks) == ("bfloat16", 1, ("block5",))
    assert card.config.fine_tune_optimizer == "adam" and card.config.fine_tune_learning_rate == 1e-3
    saved, started = model.get_layer("vgg16"), build_base(32, "none", card.config.seed)
    for layer in started.layers[1:]:
        for before, after in zip(layer.get_weights(), saved.get_layer(layer.name).get_weights()):
            assert np.array_equal(before, after) != layer.name.startswith("block5"), layer.name
    assert not (out / "fine_tune_backup").exists(), "the backup is removed once every epoch is done"
    served = load_predictor(out, "float32").predict(next(fixture_dir.glob("covid/*.png")))
    assert served.answered and served.heatmap.shape == (2, 2) and np.isfinite(served.heatmap).all(), \
        "the fine-tuned model serves with its Grad-CAM map (block 5's 2x2 at 32 px)"


def test_an_interrupted_fine_tuning_resumes_after_its_last_finished_epoch(fixture_dir, tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    args = train_args(fixture_dir, out, "--precision", "float32", "--fine-tune-epochs", "3")
    logged = finetune.EpochLog.on_epoch_end

    def stop_after_the_first(self, epoch, logs=None):
        logged(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune.EpochLog, "on_epoch_end", stop_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    assert (out / "fine_tune_backup").is_dir()
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="model.training.finetune"):
        assert train.main(args) == 0
    epochs = [r.getMessage().split(":")[0] for r in caplog.records if "fine-tuning epoch" in r.getMessage()]
    assert epochs == ["fine-tuning epoch 2/3", "fine-tuning epoch 3/3"]
    assert load_artifact(out)[1].config.fine_tune_epochs == 3 and not (out / "fine_tune_backup").exists()
