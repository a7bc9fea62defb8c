"""Acceptance tests of the Space: the app launched in-process with a small model, driven through gradio_client."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

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
from feedback.readers import hash_password, load_readers
from feedback.store import DB_NAME, all_corrections, corrections_for
from model.architecture import build_model
from model.artifact import save_artifact
from model.card import new_card
from model.config import NEGATIVE_NAME, POSITIVE_NAME, ModelConfig
from model.images import MAX_FILE_BYTES, ImageError, file_sha256, read_grey
from model.serving.cache import PredictionCache
from model.serving.predictor import load_predictor

INPUT_SIZE = 64
EXAMPLES = {Path(p).name: Path(p) for p in app.example_files()}
READERS = {"XRAY_READERS": f"dr_plain:opensesame,dr_hashed:{hash_password('s3cret', iterations=1000)}"}
RECORD_ID = re.compile(r"record \*\*#(\d+)\*\*")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(predictor, feedback_root: Path, readers: dict, downloads: Path, **launch_kwargs):
    """The app on a free local port, with a client for it; closed afterwards."""
    demo = app.build_demo(predictor, feedback_root, readers, model_path=feedback_root.parent / "no-model-here")
    app.launch(demo, feedback_root, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
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
def predictor(tmp_path_factory, network_runs):
    config = ModelConfig(weights="none", input_size=INPUT_SIZE, pooling="avg", dense=(8,))
    folder = tmp_path_factory.mktemp("model")
    save_artifact(build_model(config), folder, new_card(config, 0.5, "fixed at 0.5 for tests", {}, {}))
    loaded = load_predictor(folder)

    def counted(images):
        network_runs.append(len(images))
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
    scores, decision, overlay_path, earlier = predict(client, example)

    expected = predictor.predict(example)
    confidences = {c["label"]: c["confidence"] for c in scores["confidences"]}
    assert confidences == pytest.approx({POSITIVE_NAME: expected.probability, NEGATIVE_NAME: 1 - expected.probability})
    assert f"**{expected.label}**" in decision and "threshold of 0.50" in decision
    overlay = np.asarray(Image.open(overlay_path))
    assert overlay.shape == (*Image.open(example).size[::-1], 3)
    assert np.abs(overlay[..., 0].astype(int) - overlay[..., 2]).mean() > 5, "no heatmap colour on the grey X-ray"
    assert "No radiologist has corrected this image yet." in earlier


def test_flag_stores_one_row_and_image_copy_without_rerunning_the_network(open_app, predictor, network_runs):
    client, _, root = open_app
    example = EXAMPLES["covid-1.jpg"]
    _, decision, _, _ = predict(client, example)
    runs_after_predict = len(network_runs)

    first, earlier = flag(client, example, "negative", "dr_who", note="no opacities")
    assert len(network_runs) == runs_after_predict
    (row,) = corrections_for(root, file_sha256(example))
    assert record_id(first) == row.id and "already" not in first
    assert (row.correct_label, row.reader, row.note) == ("negative", "dr_who", "no opacities")
    assert row.original_filename == "covid-1.jpg" and row.model_version == predictor.version
    assert row.predicted_label in decision.lower() and 0 <= row.probability <= 1
    assert Path(row.image_path).read_bytes() == example.read_bytes()
    assert f"#{row.id} **negative** by dr_who" in earlier

    again, _ = flag(client, example, "negative", "dr_who")
    assert record_id(again) == row.id and "already" in again
    assert corrections_for(root, file_sha256(example)) == [row]
    assert f"#{row.id} **negative** by dr_who" in predict(client, example)[3]


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
    before = len(all_corrections(root))
    with pytest.raises(AppError, match="not an image"):
        flag(client, bad, "positive", "dr_who")
    assert len(all_corrections(root)) == before


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
    stored = [root / DB_NAME, *(Path(c.image_path) for c in all_corrections(root))]
    assert all(path.is_file() for path in stored)

    public = httpx.get(f"{url}gradio_api/file={root.parent / 'public.txt'}")
    assert public.status_code == 200 and public.text == "served on purpose\n"
    for path in stored:
        assert httpx.get(f"{url}gradio_api/file={path}").status_code == 403


def test_fifty_flags_from_ten_threads_all_land_once(open_app):
    client, _, root = open_app
    example = EXAMPLES["normal-3.png"]
    readers = [f"reader-{i:02d}" for i in range(50)]

    def send(names: list[str]) -> list[int]:
        with ThreadPoolExecutor(10) as pool:
            return list(pool.map(lambda name: record_id(flag(client, example, "positive", name)[0]), names))

    ids = send(readers)
    rows = corrections_for(root, file_sha256(example))
    assert sorted(c.reader for c in rows) == readers
    assert sorted(ids) == sorted(c.id for c in rows)
    assert len({c.image_path for c in rows}) == 1
    assert send(readers[:10]) == ids[:10]
    assert corrections_for(root, file_sha256(example)) == rows


@pytest.mark.parametrize("reader, password", [("dr_plain", ""), ("dr_plain", "wrong"), ("dr_hashed", "opensesame"),
                                              ("intruder", "opensesame"), ("", "")])
def test_with_reader_accounts_a_flag_without_valid_login_is_refused_and_nothing_stored(guarded_app, reader, password):
    client, _, root = guarded_app
    images = root / "images"
    before = (all_corrections(root), sorted(images.iterdir()) if images.exists() else [])
    with pytest.raises(AppError, match="Unknown reader or wrong password"):
        flag(client, EXAMPLES["covid-3.png"], "negative", reader, password)
    assert (all_corrections(root), sorted(images.iterdir()) if images.exists() else []) == before


def test_with_reader_accounts_the_right_password_stores_the_correction(guarded_app):
    client, _, root = guarded_app
    confirmation, _ = flag(client, EXAMPLES["normal-1.png"], "uncertain", "dr_hashed", "s3cret")
    (row,) = [c for c in all_corrections(root) if c.reader == "dr_hashed"]
    assert record_id(confirmation) == row.id and row.correct_label == "uncertain"
    assert predict(client, EXAMPLES["normal-1.png"])[0]["confidences"]


def test_without_a_model_the_app_starts_says_how_to_train_and_predict_explains(tmp_path):
    with served(None, tmp_path / "feedback", {}, tmp_path / "downloads") as (client, url):
        page = httpx.get(url).text
        assert "No model found" in page and "python -m model.train" in page
        with pytest.raises(AppError, match="python -m model.train"):
            predict(client, EXAMPLES["normal-1.png"])


def test_a_new_file_is_previewed_and_the_old_result_cleared_before_it_is_analysed(predictor, tmp_path):
    demo = app.build_demo(predictor, tmp_path / "feedback", {})
    step = {f.name: f.fn for f in demo.fns.values()}
    image, *cleared = step["show_file"](str(EXAMPLES["covid-2.jpg"]))
    assert image.shape == (512, 426) and cleared == [{}, "", None, "", ""]
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
