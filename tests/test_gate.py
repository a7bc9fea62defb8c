"""The input gate's pieces: DICOM header facts, the scoring rule against hand-computed values, the gate file."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from model.gate import (
    ANSWERED,
    NO_GATE,
    OUT_OF_SCOPE,
    UNLIKE,
    Gate,
    header_scope,
    load_gate,
    looks_like,
    save_gate,
)
from model.images import image_facts
from tests.badfiles import _dicom, _dicom_bytes, pattern


def tiny_gate(threshold: float = 0.5, novelty_threshold: float = 4.0) -> Gate:
    """Two features: the first says in scope (+) or lateral (-); the second is the in-scope films' one axis."""
    return Gate(kinds=("in_scope", "lateral"), mean=np.zeros(2), scale=np.ones(2),
                coef=np.array([[1.0, 0.0], [-1.0, 0.0]]), intercept=np.zeros(2),
                components=np.array([[0.0, 1.0]]), variances=np.array([1.0]),
                threshold=threshold, novelty_threshold=novelty_threshold)


def test_scores_are_the_softmax_and_mahalanobis_distance_computed_by_hand():
    in_scope, probs, novelty = tiny_gate().scores(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]]))
    assert in_scope[0] == pytest.approx(math.e / (math.e + 1 / math.e))
    assert in_scope[1] == pytest.approx(1 / (1 + math.e**2))
    assert in_scope[2] == pytest.approx(0.5)
    assert probs.sum(axis=1) == pytest.approx([1, 1, 1])
    assert novelty == pytest.approx([0.0, 0.0, 9.0])


def test_check_answers_in_scope_names_the_kind_it_saw_and_refuses_the_unfamiliar():
    answered, lateral, unfamiliar = tiny_gate().check(np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 3.0]]))
    assert answered.status == ANSWERED and answered.reason == ""
    assert lateral.status == OUT_OF_SCOPE and lateral.reason == looks_like("lateral")
    assert "lateral view" in lateral.reason and "frontal chest films of adults" in lateral.reason
    assert unfamiliar.status == OUT_OF_SCOPE and unfamiliar.reason == UNLIKE


def test_the_in_scope_threshold_is_inclusive_of_answers_at_or_above_it():
    p = float(tiny_gate().scores(np.array([[0.3, 0.0]]))[0][0])
    assert tiny_gate(threshold=p).check(np.array([[0.3, 0.0]]))[0].status == ANSWERED
    assert tiny_gate(threshold=p + 1e-6).check(np.array([[0.3, 0.0]]))[0].status == OUT_OF_SCOPE


def test_near_threshold_marks_rows_close_to_either_threshold():
    near = tiny_gate(novelty_threshold=9.2).near_threshold(np.array([[0.01, 0.0], [3.0, 0.0], [3.0, 3.0]]), 0.03)
    assert near.tolist() == [True, False, True]


def test_a_gate_file_round_trips_and_a_broken_one_is_a_clear_error(tmp_path):
    gate = tiny_gate()
    version = save_gate(gate, tmp_path)
    loaded = load_gate(tmp_path)
    assert len(version) == 12 and loaded.kinds == gate.kinds and loaded.threshold == 0.5
    x = np.array([[0.2, -0.7]])
    assert loaded.scores(x)[0] == pytest.approx(gate.scores(x)[0])
    (tmp_path / "gate.npz").write_bytes(b"not a gate")
    with pytest.raises(ValueError, match="not a usable input gate"):
        load_gate(tmp_path)


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize("damage, words", [
    (_cut, "BadZipFile"), (lambda data: b"", "EOFError"),
    (lambda data: dataclasses.replace(tiny_gate(), kinds=("chest", "lateral")).to_bytes(), "must hold 'in_scope'"),
    (lambda data: dataclasses.replace(tiny_gate(), coef=np.zeros((2, 3))).to_bytes(), "coef has shape (2, 3)"),
    (lambda data: dataclasses.replace(tiny_gate(), variances=np.zeros(1)).to_bytes(), "must be positive"),
    (lambda data: dataclasses.replace(tiny_gate(), mean=np.array([np.nan, 0])).to_bytes(), "not finite"),
    (lambda data: dataclasses.replace(tiny_gate(), threshold=np.ones(2)).to_bytes(), "TypeError"),
], ids=["cut short", "empty", "no in_scope kind", "coef of another shape", "zero variance", "NaN", "two thresholds"])
def test_a_damaged_gate_file_is_one_value_error_that_says_what_is_wrong(tmp_path, damage, words):
    save_gate(tiny_gate(), tmp_path)
    (tmp_path / "gate.npz").write_bytes(damage((tmp_path / "gate.npz").read_bytes()))
    with pytest.raises(ValueError, match="not a usable input gate") as error:
        load_gate(tmp_path)
    assert words in str(error.value)


@pytest.mark.parametrize("facts, words", [
    ({"Modality": "CT"}, "CT image"),
    ({"Modality": "MR"}, "MR image"),
    ({"Modality": "DX", "ViewPosition": "LL"}, "view is LL"),
    ({"Modality": "CR", "ViewPosition": "PA", "PatientAge": "004Y"}, "4 years old"),
    ({"Modality": "CR", "PatientAge": "018M"}, "2 years old"),
    ({"Modality": "DX", "BodyPartExamined": "SKULL"}, "body part is SKULL"),
])
def test_a_dicom_header_that_says_what_the_image_is_settles_it(facts, words):
    scope = header_scope(facts)
    assert scope.status == OUT_OF_SCOPE and words in scope.reason


@pytest.mark.parametrize("facts", [
    {}, {"Modality": "CR", "ViewPosition": "PA", "PatientAge": "045Y", "BodyPartExamined": "CHEST"},
    {"Modality": "DX", "ViewPosition": "AP", "BodyPartExamined": "PORT CHEST"}, {"PatientAge": "garbage"},
    {"Modality": "DX", "BodyPartExamined": "THORAX", "PatientAge": "018Y"},
])
def test_an_adult_frontal_chest_header_or_none_leaves_it_to_the_gate(facts):
    assert header_scope(facts) is None


def test_image_facts_reads_the_header_of_a_dicom_and_nothing_of_a_png(tmp_path):
    data = _dicom_bytes(_dicom(pattern(80, 80), Modality="CT", ViewPosition="", PatientAge="061Y"))
    assert image_facts(data) == {"Modality": "CT", "PatientAge": "061Y"}
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(pattern(80, 80).astype("uint8")).save(path)
    assert image_facts(path) == {}
    assert NO_GATE == "no input check for this model"
