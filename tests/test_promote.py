"""Compare two saved models on the fixture X-rays, promote only a candidate that is not worse, and roll back."""

import dataclasses
import json

import pytest

from model.commands import compare, promote
from model.artifact import (
    CARD_FILE,
    load_artifact,
    load_card,
    previous_of,
    save_artifact,
)
from model.commands.cli import USAGE_ERROR, run
from model.data import scan_folder
from tests.conftest import FIXTURE_DIR


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(good, worse, cache): a tiny trained model and the same model with its score inverted (AUC -> 1 - AUC)."""
    from model.commands import train

    root = tmp_path_factory.mktemp("models")
    cache, good, worse = root / "cache", root / "good", root / "worse"
    train.main(["--data", str(FIXTURE_DIR), "--weights", "none", "--size", "32", "--dense", "8", "--epochs", "60",
                "--optimizer", "adam", "--lr", "0.01", "--views", "1", "--cache", str(cache), "--out", str(good)])
    model, card = load_artifact(good)
    preds = model.get_layer("preds")
    preds.set_weights([-w for w in preds.get_weights()])
    save_artifact(model, worse, dataclasses.replace(card, threshold=1 - card.threshold))
    return good, worse, cache


def flags(cache, resamples: int = 300) -> list[str]:
    return ["--data", str(FIXTURE_DIR), "--cache", str(cache), "--resamples", str(resamples)]


def test_compare_prints_the_paired_difference_with_its_interval_and_a_verdict(models, tmp_path, capsys):
    good, worse, cache = models
    status = run(compare.main, [str(worse), "--against", str(good), *flags(cache), "--json", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert status == 0
    assert "AUC difference (candidate - current): -" in out and "95% CI [" in out
    assert "verdict: worse" in out and "sensitivity" in out and "specificity" in out
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["n"] == 24 and result["n_patients"] == len({e.patient_id for e in scan_folder(FIXTURE_DIR)}) < 24
    assert result["difference_ci95"][1] < 0 < result["candidate"]["auc_ci95"][1]
    assert result["difference"] == pytest.approx(result["candidate"]["auc"] - result["current"]["auc"])


def test_compare_with_itself_is_not_distinguishable(models, capsys):
    good, _, cache = models
    assert run(compare.main, [str(good), "--against", str(good), *flags(cache, 100)]) == 0
    assert "verdict: not distinguishable" in capsys.readouterr().out


def test_promote_accepts_a_better_model_refuses_a_worse_one_and_rolls_back(models, tmp_path, capsys):
    good, worse, cache = models
    target = tmp_path / "artifacts" / "default"
    assert run(promote.main, [str(worse), "--target", str(target)]) == 0
    worse_version = load_card(target).version
    assert run(promote.main, [str(good), "--target", str(target), *flags(cache)]) == 0
    card = load_card(target)
    assert card.history[-1]["verdict"] == "better" and card.history[-1]["replaced"] == worse_version
    assert [h["version"] for h in card.history] == [worse_version, card.version]
    assert load_card(previous_of(target)).version == worse_version

    assert run(promote.main, [str(worse), "--target", str(target), *flags(cache)]) == USAGE_ERROR
    assert "not installed" in capsys.readouterr().err
    assert load_card(target).version == card.version

    assert run(promote.main, ["--rollback", "--target", str(target)]) == 0
    restored = json.loads((target / CARD_FILE).read_text())
    assert restored["version"] == worse_version
    assert restored["history"][-1] | {"at": None} == {"action": "rollback", "version": worse_version, "at": None,
                                                       "replaced": card.version, "verdict": "rollback", "data": ""}
    assert load_card(previous_of(target)).version == card.version


def test_promote_needs_data_or_force_once_a_model_is_installed(models, tmp_path, capsys):
    good, worse, _ = models
    target = tmp_path / "default"
    assert run(promote.main, ["--rollback", "--target", str(target)]) == USAGE_ERROR
    assert run(promote.main, [str(good), "--target", str(target)]) == 0
    assert run(promote.main, [str(worse), "--target", str(target)]) == USAGE_ERROR
    assert "--data" in capsys.readouterr().err
    assert run(promote.main, [str(worse), "--target", str(target), "--force"]) == 0
    assert load_card(target).history[-1]["verdict"] == "forced without comparison"


def test_promote_refuses_a_candidate_with_worse_specificity_and_installs_it_whole_with_force(models, tmp_path, capsys):
    good, _, cache = models
    target, lenient = tmp_path / "default", tmp_path / "lenient"
    model, card = load_artifact(good)
    save_artifact(model, lenient, dataclasses.replace(card, threshold=0.0))
    (lenient / "report.md").write_text("the lenient model's own report\n")
    assert run(promote.main, [str(good), "--target", str(target)]) == 0
    before = sorted(p.relative_to(target) for p in target.rglob("*"))

    assert run(promote.main, [str(lenient), "--target", str(target), *flags(cache)]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "not installed" in err and "specificity lower beyond noise" in err
    assert load_card(target).version == load_card(good).version

    assert run(promote.main, [str(lenient), "--target", str(target), *flags(cache), "--force"]) == 0
    assert "verdict: worse (specificity lower" in capsys.readouterr().out
    assert (target / "report.md").read_text() == "the lenient model's own report\n"
    assert "specificity difference (candidate - current): -" in (target / "promotion.md").read_text()
    assert json.loads((target / "promotion.json").read_text())["specificity_difference_ci95"][1] < 0
    assert sorted(p.relative_to(previous_of(target)) for p in previous_of(target).rglob("*")) == before
    assert load_card(target).history[-1]["verdict"] == "worse (forced)"

    assert run(promote.main, ["--rollback", "--target", str(target)]) == 0
    assert load_card(target).version == load_card(good).version
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


def test_promote_refuses_a_candidate_that_drops_a_safeguard_unless_drop_names_exactly_those(models, tmp_path, capsys):
    good, worse, _ = models
    guarded, target = tmp_path / "guarded", tmp_path / "default"
    model, card = load_artifact(good)
    save_artifact(model, guarded, dataclasses.replace(card, transfer={"sensitivity": 0.9},
                                                      config=dataclasses.replace(card.config, film=True)))
    assert load_card(guarded).safeguards - load_card(worse).safeguards == {"operating-point", "film-finder"}
    assert run(promote.main, [str(guarded), "--target", str(target)]) == 0
    installed = load_card(target).version

    for drop in ([], ["operating-point"], ["operating-point", "film-finder", "gate"]):
        assert run(promote.main, [str(worse), "--target", str(target), "--force", *(["--drop", *drop] if drop else [])]) \
            == USAGE_ERROR
        err = capsys.readouterr().err
        assert "not installed: the candidate lacks film-finder, operating-point" in err and "--drop film-finder" in err
        assert load_card(target).version == installed

    assert run(promote.main, [str(worse), "--target", str(target), "--force",
                              "--drop", "operating-point", "film-finder"]) == 0
    assert "dropped film-finder, operating-point" in capsys.readouterr().out
    assert load_card(target).history[-1]["dropped"] == ["film-finder", "operating-point"]
    assert run(promote.main, [str(guarded), "--target", str(target), "--force", "--drop", "gate"]) == USAGE_ERROR
    assert "drops no safeguard" in capsys.readouterr().err
