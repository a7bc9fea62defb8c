"""The input gate's pieces: DICOM header facts, the scoring rule against hand-computed values, the gate file."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from pydicom.datadict import tag_for_keyword

from model.gate import (
    ANSWERED,
    MADE_FOR,
    NO_GATE,
    OUT_OF_SCOPE,
    UNLIKE,
    Gate,
    header_scope,
    load_gate,
    looks_like,
    quoted,
    save_gate,
)
from model.images import MAX_FACT_CHARS, image_facts
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
    assert (answered.looks_like, lateral.looks_like, unfamiliar.looks_like) == ("", "lateral", "unlike")


def test_a_refusal_names_the_likeliest_of_the_other_kinds():
    """Three kinds scored by three features: the likelier of the two out-of-scope kinds is the one named."""
    gate = Gate(kinds=("ct", "in_scope", "lateral"), mean=np.zeros(3), scale=np.ones(3), coef=np.eye(3),
                intercept=np.zeros(3), components=np.array([[0.0, 0.0, 1.0]]), variances=np.array([100.0]),
                threshold=0.5, novelty_threshold=4.0)
    ct, lateral = gate.check(np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 2.0]]))
    assert ct.reason == looks_like("ct") and lateral.reason == looks_like("lateral")
    assert (ct.looks_like, lateral.looks_like) == ("ct", "lateral")


def test_the_in_scope_threshold_is_inclusive_of_answers_at_or_above_it():
    p = float(tiny_gate().scores(np.array([[0.3, 0.0]]))[0][0])
    assert tiny_gate(threshold=p).check(np.array([[0.3, 0.0]]))[0].status == ANSWERED
    assert tiny_gate(threshold=p + 1e-6).check(np.array([[0.3, 0.0]]))[0].status == OUT_OF_SCOPE


def test_near_threshold_marks_rows_close_to_either_threshold():
    near = tiny_gate(novelty_threshold=9.2).near_threshold(np.array([[0.01, 0.0], [3.0, 0.0], [3.0, 3.0]]), 0.03)
    assert near.tolist() == [True, False, True]


def test_near_the_distance_threshold_is_relative_and_on_both_sides_of_it():
    """Distance threshold 9.2 and margin 0.03: distances 9 and 9.4 (2.2% under and over) are near, 1 and 25 are not."""
    rows = np.array([[3.0, 3.0], [3.0, math.sqrt(9.4)], [3.0, 1.0], [3.0, 5.0]])
    assert tiny_gate(novelty_threshold=9.2).near_threshold(rows, 0.03).tolist() == [True, True, False, False]


def test_a_distance_at_the_threshold_is_answered_and_one_over_it_refused():
    """The gate refuses distances over novelty_threshold: tiny_gate's distance of (1, 2) is 2 * 2 = 4."""
    assert tiny_gate(novelty_threshold=4.0).check(np.array([[1.0, 2.0]]))[0].status == ANSWERED
    assert tiny_gate(novelty_threshold=4.0 - 1e-9).check(np.array([[1.0, 2.0]]))[0].status == OUT_OF_SCOPE


def test_the_distance_is_the_squared_mahalanobis_distance_over_the_axes_divided_by_their_number():
    """Two principal axes of variances 1 and 4 in three features, against scipy's Mahalanobis distance with the
    inverse covariance those axes give (components' transpose, diag(1 / variances), components)."""
    from scipy.spatial.distance import mahalanobis

    components, variances = np.array([[0.0, 0.6, 0.8], [0.0, 0.8, -0.6]]), np.array([1.0, 4.0])
    gate = dataclasses.replace(tiny_gate(), mean=np.zeros(3), scale=np.ones(3), coef=np.zeros((2, 3)),
                               components=components, variances=variances)
    rows = np.random.default_rng(0).normal(size=(5, 3))
    inverse = components.T @ np.diag(1 / variances) @ components
    expected = [mahalanobis(row, np.zeros(3), inverse) ** 2 / 2 for row in rows]
    assert gate.scores(rows)[2] == pytest.approx(expected)
    assert gate.scores(np.array([[5.0, 0.6, 0.8]]))[2] == pytest.approx([0.5])  # by hand: (1 / 1 + 0 / 4) / 2


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


REFUSED = [  # (what the header says, words the reason must hold)
    ({"Modality": "CT"}, "a CT image (Modality CT)"), ({"Modality": "MR"}, "MR image"),
    ({"Modality": "us"}, "ultrasound"), ({"Modality": "NM"}, "nuclear"), ({"Modality": "PT"}, "PET"),
    ({"Modality": "MG"}, "mammogram"), ({"Modality": "XA"}, "angiogram"),
    ({"BodyPartExamined": "SKULL"}, "body part is `SKULL`"), ({"BodyPartExamined": "KNEE"}, "`KNEE`"),
    ({"BodyPartExamined": "LEFT KNEE"}, "`LEFT KNEE`"), ({"BodyPartExamined": "KNEES"}, "`KNEES`"),
    ({"BodyPartExamined": "THORACIC SPINE"}, "`THORACIC SPINE`"), ({"BodyPartExamined": "TSPINE"}, "`TSPINE`"),
    ({"BodyPartExamined": "T-SPINE"}, "`T-SPINE`"), ({"BodyPartExamined": "C-SPINE"}, "`C-SPINE`"),
    ({"BodyPartExamined": "CSPINE"}, "`CSPINE`"), ({"BodyPartExamined": "LSPINE"}, "`LSPINE`"),
    ({"BodyPartExamined": "BRUSTWIRBELSÄULE"}, "BRUSTWIRBELS"), ({"BodyPartExamined": "ABDOMEN"}, "`ABDOMEN`"),
    ({"BodyPartExamined": "ABDOMENPELVIS"}, "ABDOMENPELVIS"), ({"BodyPartExamined": "PELVIS"}, "`PELVIS`"),
    ({"BodyPartExamined": "HAND"}, "`HAND`"), ({"BodyPartExamined": "HEAD"}, "`HEAD`"),
    ({"BodyPartExamined": "SHOULDER"}, "SHOULDER"), ({"BodyPartExamined": "RIBS"}, "`RIBS`"),
    ({"BodyPartExamined": "BREAST"}, "BREAST"), ({"Modality": "DX", "BodyPartExamined": "SKULL"}, "SKULL"),
    ({"ViewPosition": "LL"}, "view is `LL`"), ({"ViewPosition": "RL"}, "`RL`"), ({"ViewPosition": "LAT"}, "`LAT`"),
    ({"ViewPosition": "LATERAL"}, "`LATERAL`"), ({"ViewPosition": "X-TABLE LAT"}, "X-TABLE LAT"),
    ({"ViewPosition": "LLO"}, "`LLO`"), ({"ViewPosition": "RAO"}, "`RAO`"), ({"ViewPosition": "OBLIQUE"}, "OBLIQUE"),
    ({"ViewPosition": "MLO"}, "`MLO`"),
    ({"Modality": "CR", "ViewPosition": "PA", "PatientAge": "004Y"}, "4 years old (PatientAge `004Y`)"),
    ({"PatientAge": "017Y"}, "17 years old"), ({"PatientAge": "018M"}, "1 year old"),
    ({"PatientAge": "006W"}, "under a year old"), ({"PatientAge": "010D"}, "under a year old"),
    ({"PatientAge": "4y"}, "4 years old"),
    # days, weeks and months in years by hand (365.25 days, 365.25 / 7 = 52.18 weeks, 12 months a year)
    ({"PatientAge": "400D"}, "is 1 year old"), ({"PatientAge": "999D"}, "is 2 years old"),  # 1.10, 2.74
    ({"PatientAge": "104W"}, "is 1 year old"), ({"PatientAge": "520W"}, "is 9 years old"),  # 1.99, 9.97
    ({"PatientAge": "900W"}, "is 17 years old"), ({"PatientAge": "011M"}, "is under a year old"),  # 17.25, 0.92
    ({"PatientAge": "030M"}, "is 2 years old"), ({"PatientAge": "215M"}, "is 17 years old"),  # 2.5, 17.92
    ({"PatientAge": "006M"}, "is under a year old"), ({"PatientAge": "003W"}, "is under a year old"),
    ({"PatientAge": "017"}, "is 17 years old"),  # no unit: years
]
FALL_THROUGH = [  # headers that do not name anything else: the image check decides
    {}, {"Modality": "CR", "ViewPosition": "PA", "PatientAge": "045Y", "BodyPartExamined": "CHEST"},
    *({"Modality": m} for m in ("CR", "DX", "DR", "RG", "OT", "SC", "", "XYZ", "<b>CT</b>")),
    *({"BodyPartExamined": part} for part in (
        "CHEST", "THORAX", "LUNG", "TORACE", "BRUST", "BRUSTKORB", "POITRINE", "TORAX", "TÓRAX", "TORAKS", "PECHO",
        "PETTO", "BORST", "PULMÃO", "CXR", "CHEST_PA", "CHEST PA", "PORT CHEST", "CHEST/LUNG", "CHESTABDOMEN",
        "NECKCHEST", "WHOLEBODY", "", "UNKNOWN", "XYZ", "胸部", "[x](http://evil.example)", "KNEEL")),
    *({"ViewPosition": view} for view in (
        "PA", "AP", "AP PORTABLE", "PA ERECT", "AP SUPINE", "APS", "FRONTAL", "AP LAT", "LLD", "RLD", "ERECT",
        "PORTABLE", "", "UNKNOWN", "LATTE")),
    *({"PatientAge": age} for age in ("000Y", "000M", "018Y", "045Y", "999Y", "", "garbage", "Y", "1234Y", "-4Y")),
    # 0 is unknown; 216M is 18.0 years, 999M 83.25, 940W 18.01, 990W 18.97; a bare number is years
    *({"PatientAge": age} for age in ("000D", "000W", "216M", "999M", "940W", "990W", "045")),
    {"Modality": "DX", "BodyPartExamined": "THORAX", "PatientAge": "018Y"},
    {"Modality": "DX", "ViewPosition": "AP", "BodyPartExamined": "PORT CHEST"},
]


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


@pytest.mark.parametrize("facts, words", REFUSED, ids=[str(f) for f, _ in REFUSED])
def test_a_header_that_names_something_else_refuses_with_its_value_quoted(facts, words):
    scope = header_scope(facts)
    assert scope is not None and scope.status == OUT_OF_SCOPE, facts
    assert words in scope.reason and scope.reason.endswith(MADE_FOR)


@pytest.mark.parametrize("facts", FALL_THROUGH, ids=[str(f) for f in FALL_THROUGH])
def test_an_unknown_foreign_blank_or_chest_header_falls_through_to_the_image_check(facts):
    assert header_scope(facts) is None


@pytest.mark.parametrize("text, code", [
    ("KNEE", "`KNEE`"), ("a`b", "``a`b``"), ("``x", "``` ``x ```"), ("x`", "`` x` ``"), ("a\n\nb", "`a b`"),
])
def test_header_text_is_quoted_as_one_inline_code_span_whatever_backticks_it_holds(text, code):
    assert quoted(text) == code


@pytest.mark.filterwarnings("ignore:The value length")
def test_image_facts_are_one_short_line_without_control_or_invisible_characters():
    ds = _dicom(pattern(80, 80), SpecificCharacterSet="ISO_IR 192")
    ds.add_new(tag_for_keyword("ViewPosition"), "LO", "LL\u202e<b>x</b>\x1b[31m\u200b\x00\nnext\u2028line\ufeff")
    ds.add_new(tag_for_keyword("BodyPartExamined"), "LO", "KNEE " + "x" * 200)
    facts = image_facts(_dicom_bytes(ds))
    assert facts["ViewPosition"] == "LL<b>x</b> [31m next line"
    assert facts["BodyPartExamined"] == ("KNEE " + "x" * 200)[:MAX_FACT_CHARS]


def test_image_facts_reads_the_header_of_a_dicom_and_nothing_of_a_png(tmp_path):
    data = _dicom_bytes(_dicom(pattern(80, 80), Modality="CT", ViewPosition="", PatientAge="061Y"))
    assert image_facts(data) == {"Modality": "CT", "PatientAge": "061Y"}
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(pattern(80, 80).astype("uint8")).save(path)
    assert image_facts(path) == {}
    assert NO_GATE == "no input check for this model"


def test_gate_thresholds_keep_covid_films_whose_distance_or_score_lies_beyond_the_other_films():
    """1,000 films at distances 0..1 and 10 COVID-19 films at 1..4: the distance threshold is NOVELTY_MARGIN times the
    COVID-19 films' own 99.5% quantile (by hand: index 0.995 * 9 = 8.955 of linspace(1, 4, 10), 3.6667 + 0.955 *
    0.3333 = 3.9850), not the pooled one (about 2.32, which would refuse the two farthest); the score floor is the
    COVID-19 films' 1% quantile (index 0.09 of linspace(0.2, 1, 10): 0.2 + 0.09 * 0.0889 = 0.2080)."""
    from model.training.gate_fit import NOVELTY_MARGIN, thresholds

    novelty = np.concatenate([np.linspace(0, 1, 1000), np.linspace(1, 4, 10)])
    in_scope = np.concatenate([np.linspace(0.5, 1, 1000), np.linspace(0.2, 1, 10)])
    covid = np.arange(1010) >= 1000
    floor, distance = thresholds(in_scope, novelty, covid)
    assert distance == pytest.approx(NOVELTY_MARGIN * 3.9850, abs=1e-3)
    assert floor == pytest.approx(0.2080, abs=1e-4)
    assert (novelty[covid] <= distance).all()
    no_covid_floor, no_covid_distance = thresholds(in_scope[:1000], novelty[:1000], covid[:1000])
    assert no_covid_distance == pytest.approx(NOVELTY_MARGIN * np.quantile(np.linspace(0, 1, 1000), 0.995))
    assert no_covid_floor == pytest.approx(0.5 + 0.01 * 999 * 0.5 / 999, abs=1e-4)
