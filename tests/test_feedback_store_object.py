"""CorrectionStore as one object: building it writes nothing, every read stays read-only, its failures are its own."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from feedback import CorrectionStore, StoreUnreadable, StoreUnwritable, export_corrections, open_store
from feedback.store import Quotas
from feedback.__main__ import main as feedback_main
from tests.readonly import read_only_mount
from tests.test_feedback import flag, png_bytes
from tests.test_store_unwritable import files_in


def test_building_and_reading_a_missing_store_writes_nothing(tmp_path):
    folder = tmp_path / "not-yet"
    store = open_store(folder)
    assert isinstance(store, CorrectionStore) and store.folder == folder
    assert store.all() == [] and store.count() == 0 and store.integrity() == "ok" and not store.exists()
    assert store.for_image("0" * 64) == [] and store.prediction_counts() == {} and store.predicted_images() == {}
    assert not folder.exists()


def test_the_store_hands_back_what_was_stored(tmp_path):
    store = CorrectionStore(tmp_path)
    first, second = png_bytes(40), png_bytes(41)
    flag(tmp_path, first)
    flag(tmp_path, second, reader="bob")
    flag(tmp_path, first, label="negative")
    store.withdraw(3, "alice")
    store.count_prediction("v1", hashlib.sha256(first).hexdigest())
    store.count_prediction("v1", hashlib.sha256(first).hexdigest())
    assert store.exists() and store.count() == 3 == len(store.all())
    assert [store.image_bytes(c) for c in store.all()] == [first, second, first]
    assert [c.id for c in store.for_image(hashlib.sha256(first).hexdigest())] == [1, 3]
    assert store.prediction_counts() == {"v1": 2}
    assert store.predicted_images() == {"v1": {hashlib.sha256(first).hexdigest()}}


def test_a_missing_image_file_reads_as_none(tmp_path):
    flag(tmp_path, png_bytes(42))
    store = CorrectionStore(tmp_path)
    [c] = store.all()
    (tmp_path / "images" / f"{c.image_sha256}.png").unlink()
    assert store.image_bytes(c) is None


def test_an_old_store_without_prediction_tables_is_read_without_adding_them(tmp_path):
    with sqlite3.connect(tmp_path / "corrections.sqlite3") as conn:
        conn.execute("CREATE TABLE corrections (id INTEGER PRIMARY KEY, image_sha256 TEXT)")
    before = (tmp_path / "corrections.sqlite3").read_bytes()
    store = CorrectionStore(tmp_path)
    assert store.predicted_images() == {} and store.prediction_counts() == {} and store.integrity() == "ok"
    assert (tmp_path / "corrections.sqlite3").read_bytes() == before
    assert not (tmp_path / "corrections.lock").exists()


def test_a_damaged_database_fails_as_the_store_s_own_errors(tmp_path, capsys):
    (tmp_path / "corrections.sqlite3").write_bytes(b"this is not an SQLite database, " * 64)
    store = CorrectionStore(tmp_path)
    for read in (store.all, store.count, store.prediction_counts, store.predicted_images, store.integrity):
        with pytest.raises(StoreUnreadable, match="cannot be read"):
            read()
    with pytest.raises(StoreUnwritable, match="cannot be written"):
        flag(tmp_path, png_bytes(43))
    with pytest.raises(StoreUnwritable):
        store.count_prediction("v1")
    with pytest.raises(StoreUnreadable):
        export_corrections(store, tmp_path / "out")
    with pytest.raises(SystemExit) as exited:
        feedback_main(["list", "--root", str(tmp_path)])
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip().startswith("error: the corrections store cannot be read")


def test_a_read_only_store_serves_every_read(tmp_path):
    folder = tmp_path / "store"
    flag(folder, png_bytes(44))
    CorrectionStore(folder).count_prediction("v1", "a" * 64)
    with read_only_mount(folder, tmp_path / "view") as view:
        store = CorrectionStore(view)
        before = files_in(view)
        [c] = store.all()
        assert store.count() == 1 and store.integrity() == "ok" and store.image_bytes(c) == png_bytes(44)
        assert store.prediction_counts() == {"v1": 1} and store.predicted_images() == {"v1": {"a" * 64}}
        assert export_corrections(store, tmp_path / "out")["covid"] == 1
        assert files_in(view) == before


def test_predicted_images_stay_bounded_forgetting_the_first_noted_while_counts_go_on(tmp_path):
    store = CorrectionStore(tmp_path, Quotas(predicted_images=3))
    images = [f"{i:x}" * 64 for i in range(6)]
    for image in [images[0], images[1], images[0], images[2], images[3], images[1], images[4]]:
        store.count_prediction("v1", image)
    store.count_prediction("v2", images[5])
    assert store.prediction_counts() == {"v1": 7, "v2": 1}
    assert store.predicted_images() == {"v1": {images[3], images[4]}, "v2": {images[5]}}


def test_a_store_holding_more_predicted_images_than_the_bound_opens_unchanged_and_is_cut_at_its_next_note(tmp_path):
    old = CorrectionStore(tmp_path, Quotas(predicted_images=100))
    for i in range(5):
        old.count_prediction("v1", f"{i:x}" * 64)
    before = (tmp_path / "corrections.sqlite3").read_bytes()
    bounded = CorrectionStore(tmp_path, Quotas(predicted_images=2))
    assert len(bounded.predicted_images()["v1"]) == 5 and bounded.integrity() == "ok"
    assert (tmp_path / "corrections.sqlite3").read_bytes() == before
    bounded.count_prediction("v1", "f" * 64)
    assert bounded.predicted_images() == {"v1": {"4" * 64, "f" * 64}} and bounded.prediction_counts() == {"v1": 6}
