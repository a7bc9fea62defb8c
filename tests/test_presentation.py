"""Tests of what a reader sees: label scores, decision sentence, model card summary, corrections listing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from feedback.store import Correction
from model.card import ModelCard, new_card
from model.config import NEGATIVE_NAME, POSITIVE_NAME, PREPROCESSING, ModelConfig, knob
from model.serving.predictor import Prediction, Predictor
from space import presentation as show
from space.label import decision_label


def prediction(probability: float, threshold: float) -> Prediction:
    """What serving decides for an image its network scores `probability`, at a card threshold of `threshold`."""
    card = new_card(ModelConfig(weights="none", input_size=32), threshold, "test", {}, {})

    def run(batch: np.ndarray):
        return np.full(len(batch), probability), np.zeros((len(batch), 2, 2), "float32"), np.zeros((len(batch), 2))

    return Predictor(card, run).predict(np.zeros((64, 64), "uint8"))


def correction(id: int, label: str, reader: str, note: str = "") -> Correction:
    return Correction(
        id=id, image_sha256="a" * 64, image_path="/store/images/x.png", original_filename="x.png",
        correct_label=label, reader=reader, note=note, predicted_label="positive", probability=0.83,
        model_version="abc123", created_at="2025-03-04T10:11:12.000000+00:00",
    )


@pytest.fixture
def card() -> ModelCard:
    split = {"images": 40, "patients": 30, "positive": 20, "negative": 20}
    test = {"n": 12, "auc": 0.875, "auc_ci95": [0.61, 0.99], "sensitivity": 0.8, "specificity": 0.75, "accuracy": 0.77}
    made = new_card(
        ModelConfig(weights="none", input_size=64, pooling="avg", dense=(8,)), 0.37, "Youden's J on validation",
        {"train": split, "validation": split, "test": split}, {"validation": test, "test": test},
        notes="Trained on the dev set only.",
    )
    return dataclasses.replace(made, version="0123456789ab")


@pytest.mark.parametrize("probability, threshold, decision", [
    (0.30, 0.166, POSITIVE_NAME), (0.166, 0.166, POSITIVE_NAME), (0.49, 0.166, POSITIVE_NAME),
    (0.10, 0.166, NEGATIVE_NAME), (0.80, 0.50, POSITIVE_NAME), (0.60, 0.70, NEGATIVE_NAME),
])
def test_the_label_is_the_decision_and_its_confidences_the_two_class_probabilities(probability, threshold, decision):
    scores = show.label_scores(prediction(probability, threshold))
    confidences = [c["confidence"] for c in scores["confidences"]]
    assert scores["label"] == decision
    assert {c["label"]: c["confidence"] for c in scores["confidences"]} == pytest.approx(
        {POSITIVE_NAME: probability, NEGATIVE_NAME: 1 - probability})
    assert confidences == sorted(confidences, reverse=True)
    sent = decision_label("Probability").postprocess(scores)
    assert sent.label == decision and sent.model_dump()["confidences"] == scores["confidences"]


def test_a_refused_input_has_no_label_and_plain_scores_still_read_as_gradio_reads_them():
    refused = dataclasses.replace(prediction(0.3, 0.166), status="out_of_scope", label="")
    assert show.label_scores(refused) == {} and decision_label("Probability").postprocess({}) == {}
    assert decision_label("Probability").postprocess({"a": 0.2, "b": 0.8}).label == "b"


@pytest.mark.parametrize("probability, threshold, label, relation", [
    (0.30, 0.25, POSITIVE_NAME, "at or above"),
    (0.25, 0.25, POSITIVE_NAME, "at or above"),
    (0.70, 0.80, NEGATIVE_NAME, "below"),
], ids=["above", "exactly at the threshold is positive", "below"])
def test_decision_text_names_the_class_and_compares_with_the_threshold(probability, threshold, label, relation):
    text = show.decision_text(prediction(probability, threshold))
    assert text.startswith(f"**{label}**: ")
    assert f"{probability:.2f}, {relation} its decision threshold of {threshold:.2f}" in text
    card = new_card(ModelConfig(weights="none", input_size=32), threshold, "sensitivity >= 0.9 on validation", {}, {})
    ruled = show.decision_text(prediction(probability, threshold), card)
    assert f"threshold of {threshold:.2f} (operating point: sensitivity >= 0.9 on validation)." in ruled


def test_decision_text_says_what_the_threshold_is_for_after_the_class(card):
    unseen = dataclasses.replace(card, transfer={"sensitivity": 0.87, "specificity": 0.78})
    text = show.decision_text(prediction(0.6, 0.37), unseen)
    assert text.startswith(f"**{POSITIVE_NAME}** (screening: finds about 9 of 10 COVID-19 films at hospitals it "
                           "never saw, and calls about 2 of 10 normal films positive): ")
    validated = show.decision_text(prediction(0.1, 0.37), card)
    assert validated.startswith(f"**{NEGATIVE_NAME}** (screening: finds about 8 of 10 COVID-19 films of its "
                                "validation patients, fewer at hospitals it never saw): ")
    assert show.screening_purpose(dataclasses.replace(card, metrics={})) == ""


def test_card_summary_shows_identity_data_test_metrics_and_limitations(card):
    text = show.card_summary(card)
    assert "version `0123456789ab`" in text
    assert "0.37 (Youden's J on validation)" in text
    assert "random initialisation" in text
    assert "| train | 40 | 30 | 20 | 20 |" in text
    assert "| 12 | 0.88 (0.61-0.99) | 0.80 | 0.75 | 0.77 |" in text
    assert all(limitation in text for limitation in show.LIMITATIONS)
    assert "Trained on the dev set only." in text
    assert "not for diagnosis" in text


def test_card_summary_states_what_to_expect_at_a_new_hospital_when_the_card_estimated_it(card):
    assert "never saw" not in show.card_summary(card)
    transfer = {"sensitivity": 0.9, "sensitivity_ci95": [0.84, 0.94], "specificity": 0.81, "other_specificity": 0.42}
    text = show.card_summary(dataclasses.replace(card, transfer=transfer))
    assert ("- At a hospital it never saw (estimated): sensitivity 0.90 (0.84-0.94), specificity 0.81 among normal "
            "films and 0.42 among other pneumonias.") in text


def test_card_summary_without_test_metrics_or_card_says_so(card):
    assert "no test metrics recorded" in show.card_summary(dataclasses.replace(card, metrics={}))
    assert "No model card" in show.card_summary(None)


def test_corrections_table_lists_each_correction_with_user_text_as_plain_cells():
    note = "clear lungs\n- #99 **positive** by dr_chief <img src=x>"
    table = show.corrections_table([correction(3, "negative", "dr_a", note), correction(7, "uncertain", "dr_b")])
    assert table["headers"] == list(show.CORRECTION_COLUMNS)
    assert table["data"] == [
        ["#3", NEGATIVE_NAME, "dr_a", "2025-03-04", "no (open mode)", "positive (0.83, model abc123)", note],
        ["#7", "Uncertain", "dr_b", "2025-03-04", "no (open mode)", "positive (0.83, model abc123)", ""],
    ]
    assert show.corrections_table([]) == {"headers": list(show.CORRECTION_COLUMNS), "data": []}
    verified = dataclasses.replace(correction(4, "positive", "dr_c"), verified=True)
    assert show.corrections_table([verified])["data"][0][4] == "yes"


def test_flag_confirmation_says_when_the_flag_is_unverified():
    assert "unverified" not in show.flag_confirmation(5, True, "negative")
    assert show.UNVERIFIED_NOTICE in show.flag_confirmation(5, True, "negative", verified=False)


def test_flag_confirmation_gives_the_record_id_and_says_when_it_was_a_repeat():
    assert "record **#5**" in show.flag_confirmation(5, True, "negative")
    repeat = show.flag_confirmation(5, False, "negative")
    assert "record **#5**" in repeat and "already" in repeat


def test_missing_model_notice_names_the_path_and_the_training_command(tmp_path):
    text = show.missing_model_notice(tmp_path / "artifact")
    assert str(tmp_path / "artifact") in text
    assert f"python -m model.train --data DATA_DIR --out {tmp_path / 'artifact'}" in text
    assert f"--out {tmp_path}`" in show.missing_model_notice(tmp_path / "model.keras")


def test_missing_model_notice_shows_paths_under_the_working_directory_relative(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert "--out model/artifacts/default`" in show.missing_model_notice(tmp_path / "model" / "artifacts" / "default")


def test_preview_keeps_the_aspect_ratio_and_caps_the_long_side():
    grey = np.tile(np.arange(1200, dtype="uint16") % 256, (600, 1)).astype("uint8")
    small = show.preview(grey, max_side=300)
    assert small.shape == (150, 300) and small.dtype == np.uint8
    assert show.preview(grey[:100, :80]).shape == (100, 80)


def test_card_summary_names_preprocessing_features_head_external_figures_and_calibration(card):
    config = ModelConfig(weights="none", input_size=64, harmonize=48, equalize="global", feature_layers=("block4",),
                         pooling="avgmax", head="logistic", l2=1.0)
    external = {"n": 30, "auc": 0.95, "auc_ci95": [0.9, 0.99], "sensitivity": 0.9, "specificity": 0.8, "accuracy": 0.85}
    shipped = dataclasses.replace(card, config=config, metrics={**card.metrics, "external": external},
                                  calibration={"method": "platt", "a": 1.0, "b": 0.0})
    text = show.card_summary(shipped)
    assert "features: block4 pooled (avgmax); head: logistic (L2 1)" in text
    assert "brought to 48 px, global histogram equalization, 64 px square" in text
    assert "**External hospital**" in text and "| 30 | 0.95 (0.90-0.99) |" in text
    assert "calibrated (platt scaling" in text
    assert "External hospital" not in show.card_summary(card) and "calibrated" not in show.card_summary(card)


def test_the_cards_input_line_names_a_new_preprocessing_step_in_its_fields_words(card):
    @dataclasses.dataclass(frozen=True)
    class WithGamma(ModelConfig):
        gamma: float = knob(1.0, PREPROCESSING, "gamma correction exponent", card="gamma {:g}")

    text = show.card_summary(dataclasses.replace(card, config=WithGamma(weights="none", input_size=64, gamma=0.5)))
    assert "- Input: gamma 0.5, 64 px square" in text
    assert "gamma" not in show.card_summary(dataclasses.replace(card, config=WithGamma(weights="none", input_size=64)))


def test_identical_overlays_get_files_of_their_own_in_gradios_cache(tmp_path):
    """Gradio rewrites a cached picture's file in place; two identical answers at once must not share one."""
    from gradio.processing_utils import save_pil_to_cache

    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    first, second = (save_pil_to_cache(show.served_picture(rgb), str(tmp_path), format="jpeg") for _ in range(2))
    assert first != second
    with Image.open(first) as a, Image.open(second) as b:
        assert a.size == (30, 40) and np.array_equal(np.asarray(a), np.asarray(b))


def test_the_decision_says_when_a_film_was_read_inverted_back_and_whether_it_found_both_lungs():
    plain = prediction(0.7, 0.5)
    assert "inverted" not in show.decision_text(plain) and "lungs" not in show.decision_text(plain)
    found = dataclasses.replace(plain, inverted=True, lungs_found=True)
    assert "read inverted back" in show.decision_text(found) and "read both lungs" in show.decision_text(found)
    missed = dataclasses.replace(plain, lungs_found=False)
    assert "did not find both lungs, so it read the whole film" in show.decision_text(missed)
    assert "inverted" not in show.decision_text(missed)
