"""The shipped model's input gate on real inputs: what it refuses and answers, through the predictor, the predict
command line and the real app; and the gate's training on fixture data."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from pydicom.datadict import tag_for_keyword

from model.artifact import DEFAULT_ARTIFACT
from model.gate import ANSWERED, MADE_FOR, OUT_OF_SCOPE
from model.serving.predictor import load_predictor
from tests.badfiles import _dicom, _dicom_bytes
from tests.conftest import FIXTURE_DIR
from tests.server import make_model, running_server

REPO = Path(__file__).resolve().parent.parent
OUT_OF_SCOPE_DIR = REPO / "tests" / "fixtures" / "outofscope"
REFUSED = {"ct.png": "CT slice", "lateral.png": "lateral view", "child.png": "child's chest film",
           "photo.png": "", "document.png": ""}
ADULT_FILMS = sorted(p for p in FIXTURE_DIR.glob("*/*") if p.suffix in (".png", ".jpg"))


@pytest.fixture(scope="module")
def shipped():
    return load_predictor(DEFAULT_ARTIFACT, "float32")


def test_the_shipped_model_has_a_gate_recorded_in_its_card(shipped):
    assert shipped.gate is not None
    record = shipped.card.gate
    assert record["threshold"] == pytest.approx(shipped.gate.threshold)
    assert "one hospital" in record["pediatric_note"]
    assert record["refused"]["external all COVID-19 films"]["n"] == 42


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_the_shipped_gate_refuses_each_out_of_scope_kind_with_its_reason(shipped, name):
    result = shipped.predict(OUT_OF_SCOPE_DIR / name)
    assert result.status == OUT_OF_SCOPE and result.label == "" and not result.positive
    assert MADE_FOR in result.reason and REFUSED[name] in result.reason


def test_the_shipped_gate_answers_every_fixture_adult_film_of_each_class(shipped):
    results = shipped.predict_many(ADULT_FILMS)
    refused = [path.name for path, r in zip(ADULT_FILMS, results) if r.status != ANSWERED]
    assert refused == []
    assert {r.label for r in results} == {"COVID-19 positive", "COVID-19 negative"}


def test_a_dicom_header_saying_ct_is_refused_without_running_the_network(tmp_path):
    predictor = load_predictor(DEFAULT_ARTIFACT, "float32")
    runs = []
    run = predictor.run
    predictor.run = lambda images: runs.append(len(images)) or run(images)
    pixels = np.asarray(Image.open(ADULT_FILMS[0]).convert("L"))
    for modality, expected in (("CT", OUT_OF_SCOPE), ("DX", ANSWERED)):
        result = predictor.predict(_dicom_bytes(_dicom(pixels, Modality=modality, ViewPosition="PA")))
        assert result.status == expected
    assert "Modality CT" in predictor.predict(_dicom_bytes(_dicom(pixels, Modality="CT"))).reason
    assert runs == [1]


HOSTILE_VIEW = "LL <b>x</b>\x1b[2J\u202e\r\nnext\u2028line"
"""A lateral ViewPosition with markup, a terminal escape, a direction override and line breaks typed into it."""


def test_predict_csv_keeps_its_columns_first_and_gives_a_refused_file_no_decision(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    out = tmp_path / "p.csv"
    hostile = tmp_path / "hostile.dcm"
    ds = _dicom(np.asarray(Image.open(ADULT_FILMS[0]).convert("L")), SpecificCharacterSet="ISO_IR 192")
    ds.add_new(tag_for_keyword("ViewPosition"), "LO", HOSTILE_VIEW)
    hostile.write_bytes(_dicom_bytes(ds))
    files = [OUT_OF_SCOPE_DIR / "photo.png", ADULT_FILMS[0], broken, hostile]
    done = subprocess.run([sys.executable, "-m", "model.predict", *map(str, files), "--csv", str(out),
                           "--precision", "float32"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    rows = list(csv.DictReader(out.open(newline="")))
    assert list(rows[0]) == ["file", "probability", "decision", "threshold", "error", "status", "reason",
                             "model_version"]
    photo, film, unreadable, header = rows
    [line] = [x for x in done.stdout.splitlines() if x.startswith(str(hostile))]
    assert line.endswith(header["reason"]) and "view is `LL <b>x</b> [2J next line`" in line
    assert not any(ch in done.stdout for ch in "\x1b\u202e\u2028\r")
    assert photo["status"] == "out_of_scope" and photo["probability"] == photo["decision"] == photo["threshold"] == ""
    assert MADE_FOR in photo["reason"]
    assert film["status"] == "answered" and film["decision"].startswith("COVID-19 ")
    assert unreadable["status"] == "unreadable" and unreadable["error"]
    assert {r["model_version"] for r in rows} == {load_predictor(DEFAULT_ARTIFACT, "float32").version}


def test_the_app_serving_the_shipped_model_refuses_a_photo_and_answers_a_film(tmp_path):
    with running_server(DEFAULT_ARTIFACT, tmp_path / "feedback", tmp_path / "app.log",
                        {"XRAY_PRECISION": "float32"}) as server:
        client = Client(server.url, verbose=False, analytics_enabled=False, download_files=str(tmp_path))
        for name, words in REFUSED.items():
            scores, decision, overlay, _, status, reason, version = client.predict(
                handle_file(str(OUT_OF_SCOPE_DIR / name)), api_name="/predict")
            assert status == "out_of_scope" and overlay is None and not scores.get("confidences")
            assert decision.startswith("**Not answered") and words in reason and "COVID-19 positive" not in decision
        covid = FIXTURE_DIR / "covid" / "cohen__16706_1_1.png"
        scores, decision, overlay, _, status, reason, version = client.predict(handle_file(str(covid)),
                                                                               api_name="/predict")
        assert status == "answered" and decision.startswith("**COVID-19 ") and overlay
        assert version == load_predictor(DEFAULT_ARTIFACT, "float32").version and reason == ""


def test_a_gate_trained_on_fixture_data_is_saved_recorded_and_used(tmp_path, monkeypatch):
    from model.data import scan_folder, split_by_patient
    from model.training import gate_fit as training

    monkeypatch.setattr(training, "RENDERED", {"train": (6, 10, 11), "held_out": (2, 5, 12)})
    monkeypatch.setattr(training, "rendered_folder", lambda: tmp_path / "made")
    folder = make_model(tmp_path / "model")
    split = split_by_patient(scan_folder(FIXTURE_DIR), 0.2, 0.2, 0)
    record = training.gate_artifact(folder, split, OUT_OF_SCOPE_DIR, FIXTURE_DIR, cache_dir=None, views=1)
    assert (folder / "gate.npz").is_file() and (folder / "reports" / "gate" / "report.md").is_file()
    assert record["refused"]["external all adult films"]["n"] == len(ADULT_FILMS)
    predictor = load_predictor(folder, "float32")
    assert predictor.card.gate["version"] == record["version"] and predictor.gate is not None
    result = predictor.predict(OUT_OF_SCOPE_DIR / "document.png")
    assert result.gate_score is not None and result.reason != "no input check for this model"
