"""Every kind of bad upload through the real server: its reason reaches the client and the server keeps serving."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from model.images import MAX_FILE_BYTES, ImageError, read_grey
from model.serving.predictor import load_predictor
from space.presentation import preview
from tests.badfiles import make_bad_files, make_valid_unusual_files
from tests.server import EXAMPLES, distinct_xrays, make_model, running_server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def client(model_dir, tmp_path_factory):
    """One client sends every file of this module in a row (over a hundred uploads in a few minutes), so its uploads
    are not limited here; the per-client upload limits have their own tests (test_server_hardening.py)."""
    tmp = tmp_path_factory.mktemp("bad-input")
    unlimited = {"XRAY_UPLOADS_PER_MINUTE": "0", "XRAY_UPLOAD_MB_PER_MINUTE": "0", "XRAY_UPLOAD_MB_KEPT": "0"}
    with running_server(model_dir, tmp / "feedback", tmp / "app.log", unlimited) as server:
        yield Client(server.url, verbose=False, analytics_enabled=False, download_files=tmp / "downloads"), server


@pytest.fixture(scope="module")
def normal_xrays(tmp_path_factory):
    """Fresh normal X-rays, one per check, so each check runs the network instead of the prediction cache."""
    return iter(distinct_xrays(EXAMPLES / "normal-2.png", tmp_path_factory.mktemp("normal"), 64))


def predict(client: Client, path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def assert_serves_normal_request(client: Client, normal_xrays) -> None:
    scores, decision, *_ = predict(client, next(normal_xrays))
    assert len(scores["confidences"]) == 2 and "decision threshold" in decision


def peak_resident_bytes(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM in /proc/PID/status)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_every_bad_file_gets_its_reason_and_the_server_keeps_serving(client, normal_xrays, tmp_path, subtests):
    client, server = client
    bad_files = make_bad_files(tmp_path)
    del bad_files["oversized"]
    assert len(bad_files) >= 15 and "dicom_deflated_huge" in bad_files
    assert_serves_normal_request(client, normal_xrays)
    peak_before = peak_resident_bytes(server.process.pid)
    for kind, path in bad_files.items():
        with subtests.test(kind=kind):
            with pytest.raises(ImageError) as reason:
                read_grey(path)
            with pytest.raises(AppError, match=re.escape(f"Cannot use {path.name}: {reason.value}")):
                predict(client, path)
            assert_serves_normal_request(client, normal_xrays)
    assert peak_resident_bytes(server.process.pid) - peak_before < 2**30


def test_a_file_over_the_size_cap_is_refused_before_upload_and_by_the_server(client, normal_xrays, tmp_path):
    client, server = client
    oversized = make_bad_files(tmp_path)["oversized"]
    assert oversized.stat().st_size > MAX_FILE_BYTES
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {MAX_FILE_BYTES} bytes"):
        predict(client, oversized)
    with oversized.open("rb") as f:
        response = httpx.post(f"{server.url}gradio_api/upload", files={"files": f}, timeout=120)
    assert response.status_code == 413
    assert f"maximum allowed size of {MAX_FILE_BYTES} bytes" in response.text
    assert_serves_normal_request(client, normal_xrays)


def test_valid_unusual_files_are_answered_as_the_model_reads_them(client, normal_xrays, model_dir, tmp_path, subtests):
    client, _ = client
    local = load_predictor(model_dir)
    for kind, path in make_valid_unusual_files(tmp_path).items():
        with subtests.test(kind=kind):
            scores, decision, overlay, *_ = predict(client, path)
            expected = local.predict(path)
            assert {c["label"]: c["confidence"] for c in scores["confidences"]}[expected.label] == pytest.approx(
                max(expected.probability, 1 - expected.probability), abs=1e-4)
            assert f"**{expected.label}**" in decision
            assert read_grey(overlay).shape == preview(read_grey(path)).shape
            assert_serves_normal_request(client, normal_xrays)
