"""A store that cannot be written: reading still works and writes nothing, writing fails with the reason in words."""

from __future__ import annotations

import errno
import os

import pytest

import feedback.store
from feedback import CorrectionStore, StoreUnwritable
from feedback.export import export_corrections
from feedback.review import apart_by_verification, summary
from feedback.store import DailyLimitReached, Quotas, StoreFull, check_note
from tests.readonly import read_only_mount
from tests.test_feedback import flag, png_bytes


def files_in(root) -> set[str]:
    """The store's files, less SQLite's own WAL index and log (a reader may open them where the folder allows)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(("-shm", "-wal"))}


def test_reading_writes_nothing(tmp_path):
    flag(tmp_path, png_bytes(1))
    CorrectionStore(tmp_path).count_prediction("v1")
    (tmp_path / "corrections.lock").unlink()
    before = files_in(tmp_path)
    assert len(CorrectionStore(tmp_path).all()) == 1 and CorrectionStore(tmp_path).prediction_counts() == {"v1": 1}
    assert files_in(tmp_path) == before and not (tmp_path / "corrections.lock").exists()


def test_a_store_under_a_regular_file_says_why_and_stores_nothing(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    root = tmp_path / "file" / "feedback"
    assert CorrectionStore(root).problem() == "its path is not a folder"
    with pytest.raises(StoreUnwritable, match="cannot be written: its path is not a folder") as refused:
        flag(root, png_bytes(2))
    assert isinstance(refused.value, OSError)
    with pytest.raises(StoreUnwritable):
        CorrectionStore(root).count_prediction("v1")
    assert CorrectionStore(root).all() == [] and CorrectionStore(root).prediction_counts() == {}


def test_a_full_disk_is_named_and_leaves_no_record(tmp_path, monkeypatch):
    flag(tmp_path, png_bytes(3))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(feedback.store, "_store_image", no_space)
    with pytest.raises(StoreUnwritable, match="the disk is full"):
        flag(tmp_path, png_bytes(4))
    assert len(CorrectionStore(tmp_path).all()) == 1


def test_a_read_only_store_reads_and_refuses_writes_with_the_reason(tmp_path):
    store = tmp_path / "store"
    flag(store, png_bytes(5), note="kept")
    with read_only_mount(store, tmp_path / "view") as view:
        assert CorrectionStore(view).problem() == "its file system is read-only"
        [row] = CorrectionStore(view).all()
        assert row.note == "kept" and os.path.isfile(row.image_path)
        with pytest.raises(StoreUnwritable, match="read-only"):
            flag(view, png_bytes(6))
        with pytest.raises(StoreUnwritable, match="read-only"):
            CorrectionStore(view).count_prediction("v1")


def test_record_quota_and_per_client_daily_limit(tmp_path):
    quotas = Quotas(records=3, daily_flags_per_client=2)
    image = png_bytes(7)
    flag(tmp_path, image, reader="walk-in-1", client="203.0.113.5", quotas=quotas)
    flag(tmp_path, image, reader="walk-in-2", client="203.0.113.5", quotas=quotas)
    with pytest.raises(DailyLimitReached, match="from your address today.*per client is 2"):
        flag(tmp_path, image, reader="walk-in-3", client="203.0.113.5", quotas=quotas)
    flag(tmp_path, image, reader="walk-in-3", client="198.51.100.1", quotas=quotas)
    with pytest.raises(StoreFull, match="holds 3 corrections"):
        flag(tmp_path, png_bytes(8), reader="walk-in-4", client="198.51.100.2", quotas=quotas)
    assert len(CorrectionStore(tmp_path).all()) == 3
    assert Quotas.from_env({"XRAY_FEEDBACK_MAX_RECORDS": "9", "XRAY_FEEDBACK_DAILY_FLAGS_PER_CLIENT": "4"}) == Quotas(
        records=9, daily_flags_per_client=4)


def test_text_direction_controls_are_refused_in_notes():
    with pytest.raises(ValueError, match="text-direction"):
        check_note("normal \u202egnol si etoN")
    assert check_note("مرحبا normal") == "مرحبا normal"


def test_a_missing_stored_image_is_skipped_not_fatal(tmp_path):
    flag(tmp_path, png_bytes(9))
    flag(tmp_path, png_bytes(10), label="negative")
    os.remove(CorrectionStore(tmp_path).all()[0].image_path)
    counts = export_corrections(CorrectionStore(tmp_path), tmp_path / "out")
    assert counts["missing_images"] == 1 and counts["not_covid"] == 1 and counts["covid"] == 0


def test_unverified_rows_under_a_readers_name_stay_apart(tmp_path):
    flag(tmp_path, png_bytes(11), reader="dr_a", verified=True)
    flag(tmp_path, png_bytes(11), label="negative", reader="dr_a", verified=False)
    rows = apart_by_verification(CorrectionStore(tmp_path).all())
    assert [r.reader for r in rows] == ["dr_a", "dr_a (unverified)"]
    assert summary(rows, {}).readers == 2
