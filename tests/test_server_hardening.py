"""The hardened Space through the real server: an unwritable store, readers' words kept from the public, lockouts an
outsider cannot turn against a reader, forged X-Forwarded-For, per-client quotas and fair shares, a corrupt model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from feedback.store import CorrectionStore
from model.config import ModelConfig
from model.images import image_identity, lossless_png
from space import presentation as show
from tests.pile import race
from tests.readonly import read_only_mount
from tests.server import APP, EXAMPLES, REPO, distinct_xrays, make_model, running_server

READERS = "dr_a:right-one,dr_b:other-one"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model"))


def client_for(server, tmp: Path | bool, forwarded: str | None = None) -> Client:
    """A client whose requests come through the proxy from `forwarded`; downloads into tmp (False: none)."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else None
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=tmp, headers=headers)


def predict(client: Client, path: Path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def flag(client: Client, path: Path, reader: str, password: str = "", note: str = "", label: str = "negative"):
    return client.predict(handle_file(str(path)), label, reader, password, note, api_name="/flag")


def assert_unwritable_store_keeps_predict_and_refuses_flags_in_words(server, tmp: Path, reason: str) -> None:
    client = client_for(server, tmp)
    scores, decision, _, earlier, *_ = predict(client, EXAMPLES / "covid-1.jpg")
    assert len(scores["confidences"]) == 2 and "threshold" in decision and earlier["data"] == []
    with pytest.raises(AppError, match=f"NOT stored: the corrections store cannot be written: {reason}"):
        flag(client, EXAMPLES / "covid-1.jpg", "dr_open")
    assert "Flagging is unavailable right now" in httpx.get(server.url + "config", timeout=30).text
    assert predict(client, EXAMPLES / "normal-1.png")[1]


def test_a_store_path_under_a_regular_file_never_breaks_predict(model_dir, tmp_path):
    (tmp_path / "file").write_text("a file where the store's folder should be")
    with running_server(model_dir, tmp_path / "file" / "feedback", tmp_path / "app.log") as server:
        assert_unwritable_store_keeps_predict_and_refuses_flags_in_words(server, tmp_path, "its path is not a folder")
        for path in ("gradio_api/call/review", "gradio_api/run/review"):
            response = httpx.post(server.url + path, json={"data": ["a", "b", None, None, None]}, timeout=30)
            assert response.status_code == 404, f"open mode has no /review: {response.status_code}"
        with pytest.raises(AppError, match="Enter your name"):
            flag(client_for(server, tmp_path), EXAMPLES / "covid-1.jpg", "<bad>")
        assert "Traceback" not in server.log_tail(100_000), "a refused request wrote a traceback to the log"


def test_a_read_only_store_never_breaks_predict(model_dir, tmp_path):
    store, image = tmp_path / "store", EXAMPLES / "covid-2.jpg"
    data = image.read_bytes()
    CorrectionStore(store).add(lossless_png(data), image.name, "negative", "dr_before", "kept", "positive", 0.9, "v0",
                               image_sha256=hashlib.sha256(data).hexdigest(), extension=".png",
                               pixel_sha256=image_identity(data))
    with read_only_mount(store, tmp_path / "view") as view:
        with running_server(model_dir, view, tmp_path / "app.log") as server:
            assert_unwritable_store_keeps_predict_and_refuses_flags_in_words(
                server, tmp_path, "its file system is read-only")
            earlier = predict(client_for(server, tmp_path), EXAMPLES / "covid-2.jpg")[3]
            assert earlier["data"] == [[show.REVIEWED]]
    assert [c.note for c in CorrectionStore(store).all()] == ["kept"]


@pytest.fixture(scope="module")
def behind_proxy(model_dir, tmp_path_factory):
    """Reader accounts behind one trusted proxy: each test client is named by the entry the proxy appended."""
    tmp = tmp_path_factory.mktemp("proxy")
    env = {"XRAY_READERS": READERS, "XRAY_TRUSTED_PROXIES": "1", "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    with running_server(model_dir, tmp / "feedback", tmp / "app.log", env) as server:
        yield server, tmp


def test_anonymous_predict_of_a_flagged_image_shows_no_reader_name_or_note(behind_proxy):
    server, tmp = behind_proxy
    image = EXAMPLES / "normal-2.png"
    _, mine = flag(client_for(server, tmp, "198.51.100.1"), image, "dr_a", "right-one", note="secret words")
    assert any(row[2] == "dr_a" and row[-1] == "secret words" for row in mine["data"]), "the reader sees it all"
    public = predict(client_for(server, tmp, "203.0.113.99"), image)[3]
    assert public["data"] == [[show.REVIEWED]]
    assert "dr_a" not in str(public) and "secret" not in str(public)


def test_an_upload_leaves_no_empty_file_in_gradios_cache(behind_proxy, tmp_path):
    server, tmp = behind_proxy
    for image in distinct_xrays(EXAMPLES / "covid-2.jpg", tmp_path / "uploads", 3):
        assert predict(client_for(server, False), image)[1]
    cache = tmp / "gradio"
    uploaded = [p for p in cache.rglob("covid-2-*.png")]
    assert len(uploaded) == 3, sorted(cache.rglob("*"))
    empty = [p.name for p in cache.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert not empty, f"empty files left in Gradio's cache: {empty}"


def test_an_outsider_cannot_lock_a_reader_out(behind_proxy):
    server, tmp = behind_proxy
    attacker = client_for(server, tmp, "203.0.113.66")
    for _ in range(5):
        with pytest.raises(AppError, match="wrong password"):
            flag(attacker, EXAMPLES / "covid-3.png", "dr_b", "guess")
    with pytest.raises(AppError, match="Too many attempts for reader 'dr_b'"):
        flag(attacker, EXAMPLES / "covid-3.png", "dr_b", "other-one")
    confirmation, _ = flag(client_for(server, tmp, "198.51.100.2"), EXAMPLES / "covid-3.png", "dr_b", "other-one")
    assert "recorded as record" in confirmation


def test_forged_entries_before_the_proxys_do_not_escape_the_client_limit(behind_proxy):
    server, tmp = behind_proxy
    for i in range(20):
        forged = client_for(server, tmp, f"10.9.9.{i}, 203.0.113.77")
        with pytest.raises(AppError, match="wrong password"):
            flag(forged, EXAMPLES / "covid-3.png", f"nobody-{i}", "x")
    with pytest.raises(AppError, match="Too many attempts for this client"):
        flag(client_for(server, tmp, "1.1.1.1, 203.0.113.77"), EXAMPLES / "covid-3.png", "dr_a", "right-one")


PILE, FIRST = 40, 8


def test_one_clients_pile_of_predictions_does_not_hold_up_another_clients(tmp_path):
    """A client with 40 predictions queued (sent from its own process, like a second user's machine) and another
    client's single prediction, sent once 8 of the pile are answered: first come, first served, all 32 still
    waiting would finish before it; with a fair share it overtakes most of them. The model is a 160-px VGG-16, so
    that the network, which the fair share shares out, is what the predictions wait for (with a tiny model they
    wait for the uploads and Gradio's own work, which no share of the network can order). In float32: where
    bfloat16 pays (6x with AMX), even this network is too fast to be what the predictions wait for."""
    model = make_model(tmp_path / "model", ModelConfig(weights="none", input_size=160, pooling="avg", dense=(8,)))
    env = {"XRAY_TRUSTED_PROXIES": "1", "XRAY_PRECISION": "float32"}
    with running_server(model, tmp_path / "feedback", tmp_path / "app.log", env) as server:
        pile_then_lone(server, tmp_path)


def pile_then_lone(server, tmp_path: Path) -> None:
    """The pile from its own process, then, once FIRST are answered, the lone prediction; how many overtook it."""
    distinct_xrays(EXAMPLES / "covid-1.jpg", tmp_path / "pile", PILE)
    lone = distinct_xrays(EXAMPLES / "normal-1.png", tmp_path / "lone", 1)[0]
    client = client_for(server, False, "198.51.100.10")
    result = race(server.url, tmp_path / "pile", FIRST, lambda: predict(client, lone))
    assert result.errors == "errors 0" and len(result.finished) == PILE - FIRST, result.errors
    waiting = PILE - FIRST
    assert result.overtaken_by < waiting / 2, \
        f"{result.overtaken_by} of the {waiting} waiting predictions of the other client finished first"


def test_a_loopback_peers_forged_header_is_ignored_and_open_mode_flags_are_limited_per_client(model_dir, tmp_path):
    env = {"XRAY_FEEDBACK_DAILY_FLAGS_PER_CLIENT": "3"}
    images = distinct_xrays(EXAMPLES / "covid-2.jpg", tmp_path / "images", 4)
    with running_server(model_dir, tmp_path / "feedback", tmp_path / "app.log", env) as server:
        for i, image in enumerate(images[:3]):
            flag(client_for(server, tmp_path, f"10.0.0.{i}"), image, f"walk-in-{i}", note="anyone sees this?")
        with pytest.raises(AppError, match="from your address today, the daily limit per client is 3"):
            flag(client_for(server, tmp_path, "10.0.0.99"), images[3], "walk-in-99")
        public = predict(client_for(server, tmp_path), images[0])[3]
        assert public["data"] == [[show.REVIEWED]] and "anyone" not in str(public)
    assert len(CorrectionStore(tmp_path / "feedback").all()) == 3


def test_a_corrupt_model_file_is_one_clear_line_and_exit_status_2(model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_card.json").write_bytes((model_dir / "model_card.json").read_bytes())
    (broken / "model.keras").write_bytes((model_dir / "model.keras").read_bytes()[:1000])
    env = {**os.environ, "MODEL_PATH": str(broken), "XRAY_FEEDBACK_DIR": str(tmp_path / "fb"), "PORT": "1"}
    done = subprocess.run([sys.executable, str(APP)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    [line] = [x for x in done.stderr.splitlines() if "Cannot start" in x]
    assert "is not a readable Keras model" in line and "File not found" not in line
