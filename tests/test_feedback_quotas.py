"""Disk stays bounded: a total quota on stored images and a daily number of flags per reader."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

import feedback.store
from feedback import CorrectionStore
from feedback.store import DailyLimitReached, QuotaExceeded, Quotas, StoreFull
from tests.test_feedback import flag, png_bytes


def stored_files(root) -> list[str]:
    images = root / "images"
    return sorted(p.name for p in images.iterdir()) if images.is_dir() else []


def test_quotas_from_env_and_defaults():
    assert Quotas.from_env({}) == Quotas(2048 * 2**20, 200)
    assert Quotas.from_env({"XRAY_FEEDBACK_QUOTA_MB": " 5 ", "XRAY_FEEDBACK_DAILY_FLAGS": "3"}) == Quotas(5 * 2**20, 3)
    with pytest.raises(ValueError, match="XRAY_FEEDBACK_DAILY_FLAGS"):
        Quotas.from_env({"XRAY_FEEDBACK_DAILY_FLAGS": "-1"})


def test_store_full_refuses_and_stores_nothing(tmp_path):
    first, second = png_bytes(20), png_bytes(21)
    quotas = Quotas(store_bytes=len(first) + len(second) - 1, daily_flags=100)
    flag(tmp_path, first, quotas=quotas)
    with pytest.raises(StoreFull, match="full"):
        flag(tmp_path, second, quotas=quotas)
    assert len(CorrectionStore(tmp_path).all()) == 1
    assert stored_files(tmp_path) == [hashlib.sha256(first).hexdigest() + ".png"]
    flag(tmp_path, first, reader="bob", quotas=quotas)
    assert len(CorrectionStore(tmp_path).all()) == 2


def test_total_quota_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_FEEDBACK_QUOTA_MB", "0")
    with pytest.raises(QuotaExceeded):
        flag(tmp_path, png_bytes(22))
    assert CorrectionStore(tmp_path).all() == [] and stored_files(tmp_path) == []


def test_daily_limit_per_reader_refuses_and_stores_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_FEEDBACK_DAILY_FLAGS", "2")
    flag(tmp_path, png_bytes(23))
    flag(tmp_path, png_bytes(24))
    assert flag(tmp_path, png_bytes(24)) == (2, False)
    with pytest.raises(DailyLimitReached, match="'alice' has made 2 flags today.*00:00 UTC") as refused:
        flag(tmp_path, png_bytes(25))
    assert isinstance(refused.value, ValueError)
    assert len(CorrectionStore(tmp_path).all()) == 2 and len(stored_files(tmp_path)) == 2
    assert flag(tmp_path, png_bytes(25), reader="bob") == (3, True)


def test_daily_limit_starts_again_on_the_next_utc_day(tmp_path, monkeypatch):
    quotas = Quotas(daily_flags=1)
    monkeypatch.setattr(feedback.store, "_utc_now", lambda: datetime(2025, 3, 4, 23, 59, tzinfo=timezone.utc))
    flag(tmp_path, png_bytes(26), quotas=quotas)
    with pytest.raises(DailyLimitReached):
        flag(tmp_path, png_bytes(27), quotas=quotas)
    monkeypatch.setattr(feedback.store, "_utc_now", lambda: datetime(2025, 3, 5, 0, 0, tzinfo=timezone.utc))
    assert flag(tmp_path, png_bytes(27), quotas=quotas) == (2, True)


def test_reencoded_bytes_are_stored_under_the_uploads_sha256(tmp_path):
    upload, reencoded = b"original DICOM bytes", png_bytes(28)
    upload_sha = hashlib.sha256(upload).hexdigest()
    record_id, created = flag(tmp_path, reencoded, filename="scan.dcm", image_sha256=upload_sha.upper(),
                              extension="png")
    [c] = CorrectionStore(tmp_path).for_image(upload_sha)
    assert (c.id, c.image_sha256, c.original_filename) == (record_id, upload_sha, "scan.dcm")
    assert stored_files(tmp_path) == [f"{upload_sha}.png"]
    assert (tmp_path / "images" / f"{upload_sha}.png").read_bytes() == reencoded
    assert flag(tmp_path, png_bytes(29), filename="x.dcm", image_sha256=upload_sha, extension=".png") == (1, False)


@pytest.mark.parametrize("change, message", [
    (dict(image_sha256="abc"), "SHA-256"), (dict(extension="p/ng"), "extension"), (dict(extension=""), "extension"),
])
def test_bad_sha256_or_extension_is_refused(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        flag(tmp_path, png_bytes(30), **change)
    assert CorrectionStore(tmp_path).all() == [] and stored_files(tmp_path) == []


def test_the_quotas_are_told_before_any_work_on_an_image_and_telling_writes_nothing(tmp_path):
    root = tmp_path / "store"
    CorrectionStore(root, Quotas()).check_quotas("alice")
    with pytest.raises(DailyLimitReached, match="daily limit is 0"):
        CorrectionStore(root, Quotas(daily_flags=0)).check_quotas("alice")
    assert not root.exists(), "a store not made yet counts as empty and is not made by asking"
    image = png_bytes(40)
    flag(root, image, reader="alice", client="203.0.113.9")
    CorrectionStore(root, Quotas(daily_flags=2, daily_flags_per_client=2)).check_quotas("alice", "203.0.113.9")
    for quotas, client, error in [(Quotas(daily_flags=1), None, DailyLimitReached),
                                  (Quotas(daily_flags_per_client=1), "203.0.113.9", DailyLimitReached),
                                  (Quotas(records=1), None, StoreFull), (Quotas(store_bytes=len(image)), None, StoreFull)]:
        with pytest.raises(error):
            CorrectionStore(root, quotas).check_quotas("bob" if error is StoreFull else "alice", client)
    CorrectionStore(root, Quotas(daily_flags_per_client=1)).check_quotas("alice", "198.51.100.1")
