"""The Corrections tab's statistics on small stores whose kappas and confusion matrix were worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedback.review import agreement, cohen_kappa, confusion, filter_corrections, fleiss_kappa, summary
from feedback.store import CorrectionStore
from space import presentation as show

# image -> model decision and version, then (reader, label) in the order they were flagged
TWO_READERS = {
    "i1": ("negative", "v1", [("dr_a", "positive"), ("dr_b", "positive")]),
    "i2": ("positive", "v1", [("dr_a", "negative"), ("dr_b", "positive")]),
    "i3": ("positive", "v2", [("dr_a", "negative"), ("dr_b", "negative")]),
    "i4": ("positive", "v2", [("dr_a", "uncertain"), ("dr_b", "negative")]),
}
THREE_READERS = {
    "j1": ("negative", "v1", [("dr_a", "positive"), ("dr_b", "positive"), ("dr_c", "positive")]),
    "j2": ("negative", "v1", [("dr_a", "positive"), ("dr_b", "positive"), ("dr_c", "negative")]),
    "j3": ("positive", "v1", [("dr_a", "negative"), ("dr_b", "negative"), ("dr_c", "uncertain")]),
    "j4": ("positive", "v1", [("dr_a", "negative")]),
}


def make_store(root, images: dict) -> list:
    for name, (decision, version, reads) in images.items():
        for reader, label in reads:
            CorrectionStore(root).add(name.encode(), f"{name}.png", label, reader, f"note on {name}", decision,
                           0.9 if decision == "positive" else 0.1, version, verified=True)
    return CorrectionStore(root).all()


def test_cohen_kappa_of_two_readers_on_four_images_is_the_hand_computed_0_2(tmp_path):
    # observed 2/4 = 0.5; chance: a (p .25, n .5, u .25) x b (p .5, n .5) = .125 + .25 = .375; (.5-.375)/.625
    found = agreement(make_store(tmp_path, TWO_READERS))
    assert (found.method, found.images, found.readers) == ("Cohen's kappa", 4, 2)
    assert found.kappa == pytest.approx(0.2)


def test_fleiss_kappa_of_three_readers_is_the_hand_computed_5_23(tmp_path):
    # P_i = 1, 1/3, 1/3 -> 5/9; shares 5/9, 3/9, 1/9 -> chance 35/81; (45 - 35) / (81 - 35) = 10/46
    found = agreement(make_store(tmp_path, THREE_READERS))
    assert (found.method, found.images, found.readers) == ("Fleiss' kappa", 3, 3)
    assert found.kappa == pytest.approx(5 / 23)


def test_fleiss_kappa_allows_images_with_different_numbers_of_readers():
    # P_i = 1 (2 of 2 agree), 0 (1 vs 1), 1/3 (2 vs 1): 4/9; shares 4/7, 3/7 -> 25/49; (4/9 - 25/49) / (24/49)
    counts = np.array([[2, 0, 0], [1, 1, 0], [1, 2, 0]])
    assert fleiss_kappa(counts) == pytest.approx((4 / 9 - 25 / 49) / (24 / 49))


def test_kappas_are_undefined_not_a_number_when_every_reader_says_the_same():
    assert math.isnan(cohen_kappa(["negative"] * 3, ["negative"] * 3))
    assert math.isnan(fleiss_kappa(np.array([[2, 0, 0], [3, 0, 0]])))


def test_a_readers_latest_verdict_is_the_one_agreement_uses(tmp_path):
    images = {"k1": ("positive", "v1", [("dr_a", "positive"), ("dr_b", "negative"), ("dr_a", "negative")]),
              "k2": ("positive", "v1", [("dr_a", "positive"), ("dr_b", "positive")])}
    found = agreement(make_store(tmp_path, images))
    assert (found.images, found.readers, found.kappa) == (2, 2, pytest.approx(1.0))


def test_no_image_with_two_readers_means_no_agreement(tmp_path):
    assert agreement(make_store(tmp_path, {"j4": THREE_READERS["j4"]})) is None
    assert agreement([]) is None


def test_confusion_of_reader_label_against_model_decision_is_the_hand_counted_matrix(tmp_path):
    matrix = confusion(make_store(tmp_path, TWO_READERS))
    # rows: reader positive, negative, uncertain; columns: model positive, negative
    np.testing.assert_array_equal(matrix, [[1, 2], [4, 0], [1, 0]])
    np.testing.assert_array_equal(confusion([]), np.zeros((3, 2)))


def test_summary_shares_of_predictions_corrected_by_model_version(tmp_path):
    stored = make_store(tmp_path, TWO_READERS)
    sha = {c.original_filename.removesuffix(".png"): c.image_sha256 for c in stored}
    # v1 predicted i1 twice and two images nobody flagged; i2 was flagged under v1 but never predicted here.
    for version, images in (("v1", ["i1", "i1", "a" * 64, "b" * 64]), ("v2", ["i3", "i4", *("c" * 64,) * 8]),
                            ("v3", ["d" * 64] * 3)):
        for image in images:
            CorrectionStore(tmp_path).count_prediction(version, sha.get(image, image))
    assert CorrectionStore(tmp_path).prediction_counts() == {"v1": 4, "v2": 10, "v3": 3}

    found = summary(stored, CorrectionStore(tmp_path).prediction_counts(), CorrectionStore(tmp_path).predicted_images())
    assert (found.corrections, found.images, found.readers) == (8, 4, 2)
    shares = {v.model_version: (v.predictions, v.predicted_images, v.corrected_predicted_images, v.corrections,
                                v.share) for v in found.versions}
    assert shares == {"v1": (4, 3, 1, 4, 1 / 3), "v2": (10, 3, 2, 4, 2 / 3), "v3": (3, 1, 0, 0, 0.0)}
    assert show.version_table(found)["data"][0] == ["v1", 4, 3, 1, "33.3%"]
    assert show.confusion_table(found)["data"] == [["COVID-19 positive", 1, 2], ["COVID-19 negative", 4, 0],
                                                   ["Uncertain", 1, 0]]
    assert "Cohen's kappa **0.20**" in show.review_counts(found)


def test_counts_are_in_correct_english(tmp_path):
    one = summary(make_store(tmp_path, {"k1": ("positive", "v1", [("dr_a", "negative")])}), {})
    assert show.review_counts(one).startswith("**1** correction of **1** image by **1** reader.")
    assert "**1** correction matches the filters" in show.review_status(1, 1)
    assert "**3** corrections match" in show.review_status(3, 3)


def test_filters_by_label_reader_and_model_version(tmp_path):
    stored = make_store(tmp_path, TWO_READERS)
    assert [c.original_filename for c in filter_corrections(stored, label="negative")] == ["i2.png", "i3.png",
                                                                                           "i3.png", "i4.png"]
    assert {c.reader for c in filter_corrections(stored, reader="dr_b")} == {"dr_b"}
    assert len(filter_corrections(stored, model_version="v2", reader="dr_a")) == 2
    assert filter_corrections(stored) == stored and filter_corrections(stored, label="") == stored


def test_prediction_counts_of_a_missing_store_are_empty_and_a_version_is_required(tmp_path):
    assert CorrectionStore(tmp_path / "none").prediction_counts() == {}
    with pytest.raises(ValueError, match="model_version"):
        CorrectionStore(tmp_path).count_prediction("")


def test_verdicts_on_refused_inputs_are_counted_but_never_enter_the_confusion_or_the_agreement(tmp_path):
    with_verdicts = {**TWO_READERS, "photo": ("out_of_scope", "v2", [("dr_a", "in_scope"), ("dr_b", "out_of_scope")])}
    plain, mixed = summary(make_store(tmp_path / "plain", TWO_READERS), {}), summary(
        make_store(tmp_path / "mixed", with_verdicts), {})
    assert (mixed.corrections, mixed.images) == (plain.corrections + 2, plain.images + 1)
    assert np.array_equal(mixed.confusion, plain.confusion)
    assert mixed.agreement == plain.agreement


def test_one_picture_sent_as_two_files_is_one_image_to_the_agreement_and_the_counts(tmp_path):
    # two readers flag the same pixels sent as different files (a PNG and its re-encoding): the export merges them by
    # the pixels' identity, so the tab's agreement and image count must too
    store = CorrectionStore(tmp_path)
    for reader, data in (("dr_a", b"png bytes"), ("dr_b", b"re-encoded bytes")):
        store.add(data, "film.png", "positive", reader, "", "negative", 0.1, "v1", verified=True,
                  pixel_sha256="ab" * 32)
    corrections = store.all()
    assert len({c.image_sha256 for c in corrections}) == 2
    assert summary(corrections, {}).images == 1
    found = agreement(corrections)
    assert (found.images, found.readers) == (1, 2)
