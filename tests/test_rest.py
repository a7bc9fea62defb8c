"""The REST API through the real server, beside the page: the same answers, errors, sign-in and limits at both doors."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from fastapi import HTTPException
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from feedback.store import CorrectionStore
from model.config import POSITIVE_NAME
from model.gate import MADE_FOR
from model.images import MAX_FILE_BYTES
from space.admission import REFUSED, Admission, admitted
from space.upload_limits import UploadLedger, UploadLimits
from tests.badfiles import _dicom, _dicom_bytes
from tests.server import EXAMPLES, add_gate, make_model, running_server

READERS = "dr_a:right-one,dr_b:other-one"
UPLOADS_PER_MINUTE = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rest")
    model = add_gate(make_model(tmp / "model"))
    env = {"XRAY_READERS": READERS, "XRAY_TRUSTED_PROXIES": "1", "XRAY_UPLOADS_PER_MINUTE": str(UPLOADS_PER_MINUTE)}
    with running_server(model, tmp / "feedback", tmp / "server.log", env) as running:
        yield running


def http(server, forwarded: str) -> httpx.Client:
    """Requests through the trusted proxy from `forwarded` (each test its own address: the limits are per client)."""
    return httpx.Client(base_url=server.url, headers={"X-Forwarded-For": forwarded}, timeout=120)


def page(server, forwarded: str) -> Client:
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=False,
                  headers={"X-Forwarded-For": forwarded})


def rest_predict(client: httpx.Client, path: Path, **params) -> httpx.Response:
    return client.post("api/v1/predict", files={"file": (path.name, path.read_bytes())}, params=params)


def ct_slice(folder: Path) -> Path:
    """A DICOM whose header says CT: the input check refuses it."""
    path = folder / "slice.dcm"
    grey = np.asarray(Image.open(EXAMPLES / "covid-1.jpg").convert("L"))
    path.write_bytes(_dicom_bytes(_dicom(grey, Modality="CT")))
    return path


def test_for_every_example_the_api_and_the_page_give_the_same_answer(server, tmp_path):
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg")) + [ct_slice(tmp_path)]
    model = httpx.get(server.url + "api/v1/model", timeout=30).json()
    assert model["made_for"] == MADE_FOR and model["input_check"] and model["version"] in model["card"]
    with http(server, "203.0.113.1") as api:
        for path in files:
            scores, decision, _, _, status, reason, version = page(server, "203.0.113.2").predict(
                handle_file(str(path)), api_name="/predict")
            answer = rest_predict(api, path).json()
            assert (answer["status"], answer["reason"], answer["model_version"]) == (status, reason, version), path
            assert answer["model_version"] == model["version"] and answer["threshold"] == model["threshold"]
            if status == "answered":
                positive = {c["label"]: c["confidence"] for c in scores["confidences"]}[POSITIVE_NAME]
                assert answer["probability"] == pytest.approx(positive, abs=1e-6), path
                assert answer["decision"] == scores["label"] and answer["gate"]["kind"] == "image"
                assert answer["gate"]["looks_like"] is None
                assert f"decision threshold of {answer['threshold']:.2f}" in decision
            else:
                assert answer["probability"] is None and answer["decision"] is None and scores == {}
    assert [f.name for f in files if f.suffix == ".dcm"] and status == "out_of_scope", "the CT slice is refused"
    assert answer["gate"] == {"kind": "header", "score": None, "looks_like": None}


def test_the_heatmap_comes_as_a_png_only_when_asked(server):
    import base64
    import io

    with http(server, "203.0.113.3") as api:
        plain = rest_predict(api, EXAMPLES / "normal-1.png").json()
        drawn = rest_predict(api, EXAMPLES / "normal-1.png", heatmap=1).json()
    assert plain["heatmap_png"] is None
    picture = Image.open(io.BytesIO(base64.b64decode(drawn["heatmap_png"])))
    assert picture.format == "PNG" and picture.mode == "RGB" and min(picture.size) > 32


@pytest.mark.parametrize("content, words", [(b"", "the file is empty"), (b"not an image at all", "not an image")])
def test_a_bad_file_gets_the_page_s_words_as_a_json_error(server, tmp_path, content, words):
    bad = tmp_path / "scan.png"
    bad.write_bytes(content)
    with pytest.raises(AppError) as refused:
        page(server, "203.0.113.4").predict(handle_file(str(bad)), api_name="/predict")
    with http(server, "203.0.113.4") as api:
        response = rest_predict(api, bad)
    assert response.status_code == 422 and words in response.json()["detail"]
    assert response.json()["detail"] == str(refused.value.message) and "Cannot use scan.png" in str(refused.value)


def test_an_upload_over_the_limit_is_refused_before_its_body_is_read(server):
    address = urlparse(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as raw:
        raw.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                    + f"Content-Length: {MAX_FILE_BYTES * 2}\r\n\r\n".encode())
        head = raw.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413") and f"maximum allowed size of {MAX_FILE_BYTES} bytes" in head


def test_the_api_counts_against_the_same_upload_allowance_as_the_page(server, tmp_path):
    bad = tmp_path / "junk.png"
    bad.write_bytes(b"junk")
    with http(server, "203.0.113.5") as api:
        codes = [rest_predict(api, bad).status_code for _ in range(UPLOADS_PER_MINUTE)]
        over = rest_predict(api, bad)
        at_page = api.post("gradio_api/upload", files={"files": ("junk.png", b"junk")})
    assert codes == [422] * UPLOADS_PER_MINUTE
    assert over.status_code == 429 and "too many uploads from you" in over.json()["detail"]
    assert at_page.status_code == 429 and "too many uploads from you" in at_page.text


def test_the_schema_lists_the_api_s_routes_and_only_them(server):
    schema = httpx.get(server.url + "openapi.json", timeout=30).json()
    assert set(schema["paths"]) == {"/api/v1/predict", "/api/v1/model", "/api/v1/flag"}
    assert "PredictAnswer" in schema["components"]["schemas"]


def test_a_reader_flags_through_the_api_and_a_wrong_password_is_refused(server, tmp_path):
    with http(server, "203.0.113.6") as api:
        form = {"correct_label": "negative", "reader": "dr_a", "password": "right-one", "note": "via REST"}
        files = {"file": ("covid-3.png", (EXAMPLES / "covid-3.png").read_bytes())}
        stored = api.post("api/v1/flag", files=files, data=form)
        wrong = api.post("api/v1/flag", files=files, data={**form, "password": "wrong"})
    assert stored.status_code == 200 and stored.json()["verified"], stored.text
    [row] = [c for c in CorrectionStore(server.feedback_root).all() if c.note == "via REST"]
    assert (row.id, row.reader, row.correct_label) == (stored.json()["record_id"], "dr_a", "negative")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "Unknown reader or wrong password."


def test_failed_sign_ins_through_the_api_lock_the_page_out_too(server):
    files = {"file": ("covid-3.png", (EXAMPLES / "covid-3.png").read_bytes())}
    form = {"correct_label": "negative", "reader": "dr_b", "password": "wrong"}
    with http(server, "203.0.113.7") as api:
        codes = [api.post("api/v1/flag", files=files, data=form).status_code for _ in range(5)]
        locked = api.post("api/v1/flag", files=files, data={**form, "password": "other-one"})
    assert codes == [401] * 5 and locked.status_code == 429 and "Too many attempts" in locked.json()["detail"]
    with pytest.raises(AppError, match="Too many attempts for reader 'dr_b'"):
        page(server, "203.0.113.7").predict(handle_file(str(EXAMPLES / "covid-3.png")), "negative", "dr_b",
                                            "other-one", "", api_name="/flag")


def test_an_api_request_holds_one_of_its_client_s_places_while_it_runs():
    door = Admission(limit=1)
    with admitted(door, "a"):
        with pytest.raises(HTTPException) as refused:
            with admitted(door, "a"):
                pass
        with admitted(door, "b"):
            pass
    assert (refused.value.status_code, refused.value.detail) == (429, REFUSED)
    with admitted(door, "a"):
        pass


def test_api_uploads_count_towards_the_rates_but_are_not_kept():
    mb = 2**20
    ledger = UploadLedger(UploadLimits(per_minute=7, bytes_per_minute=0, bytes_kept=2 * mb, keep_s=3600))
    assert [ledger.refusal("a", mb, kept=False) for _ in range(5)] == [None] * 5, "nothing of them is kept"
    assert ledger.refusal("a", mb) is None and "is kept: at most 2 MB" in ledger.refusal("a", 1.5 * mb)
    assert ledger.refusal("a", mb, kept=False) is None
    assert "at most 7 a minute" in ledger.refusal("a", mb, kept=False)


def test_the_page_s_queue_and_the_api_count_a_client_s_requests_at_one_door(monkeypatch):
    import gradio as gr

    from space.admission import admit_per_client
    from tests.server import free_port

    monkeypatch.setenv("XRAY_TRUSTED_PROXIES", "1")
    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda text: text, box, box, api_name="echo")
    door = Admission(limit=1)
    admit_per_client(demo.queue(), door)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        with httpx.Client(base_url=demo.local_url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30) as page_http:
            with admitted(door, "203.0.113.9"):
                refused = page_http.post("gradio_api/call/echo", json={"data": ["hello"]})
            let_in = page_http.post("gradio_api/call/echo", json={"data": ["hello"]})
    finally:
        demo.close()
    assert refused.status_code == 429 and refused.json()["detail"] == REFUSED
    assert let_in.status_code == 200, "the API's request ended, so the page's may enter"
