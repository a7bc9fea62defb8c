"""The store's files are readable by their owner only, including those of a store made before this rule."""

from __future__ import annotations

import os
import stat

from feedback import CorrectionStore
from feedback.store import _connect
from tests.test_feedback import flag, png_bytes


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_database_lock_and_images_are_owner_only(tmp_path):
    old_umask = os.umask(0o022)
    try:
        flag(tmp_path / "store", png_bytes(40))
        conn = _connect(tmp_path / "store")
        conn.execute("SELECT COUNT(*) FROM corrections").fetchone()
        names = sorted(p.name for p in (tmp_path / "store").iterdir() if p.is_file())
        modes = {name: mode(tmp_path / "store" / name) for name in names}
        conn.close()
    finally:
        os.umask(old_umask)
    assert names == ["corrections.lock", "corrections.sqlite3", "corrections.sqlite3-shm", "corrections.sqlite3-wal"]
    assert modes == dict.fromkeys(names, 0o600)
    [image] = (tmp_path / "store" / "images").iterdir()
    assert mode(image) == 0o600
    assert mode(tmp_path / "store") == 0o700 and mode(tmp_path / "store" / "images") == 0o700


def test_an_existing_world_readable_store_is_tightened_by_the_next_write_not_by_reading(tmp_path):
    flag(tmp_path, png_bytes(41))
    for name in ("corrections.sqlite3", "corrections.lock"):
        os.chmod(tmp_path / name, 0o644)
    assert len(CorrectionStore(tmp_path).all()) == 1
    assert mode(tmp_path / "corrections.sqlite3") == 0o644
    flag(tmp_path, png_bytes(42))
    assert mode(tmp_path / "corrections.sqlite3") == 0o600 and mode(tmp_path / "corrections.lock") == 0o600
