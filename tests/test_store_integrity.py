"""The store's integrity check on a real damaged SQLite file: it reports what SQLite finds, never "ok"."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from feedback import open_store
from tests.test_feedback import flag, png_bytes


def database(folder: Path) -> Path:
    """The store's SQLite file (whatever its name), its write-ahead log folded in and removed."""
    [path] = folder.glob("*.sqlite3")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def damage_an_index(path: Path, reader: str) -> str:
    """Change one letter of `reader` inside the page of an index on the reader (the table row keeps the name), as a
    flipped bit on disk would; returns the index's name."""
    with closing(sqlite3.connect(path)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        name, root = conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'index' "
                                  "AND sql LIKE '%(reader%' ORDER BY name").fetchone()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    at = data.find(reader.encode(), start, start + page_size)
    assert at >= 0, "the index page holds the reader's name"
    data[at + len(reader) - 1] += 1
    path.write_bytes(bytes(data))
    return name


def test_a_damaged_store_is_not_reported_as_sound_and_says_what_sqlite_found(tmp_path):
    for seed, reader in enumerate(("alice", "bob", "carol")):
        flag(tmp_path, png_bytes(60 + seed), reader=reader)
    store = open_store(tmp_path)
    assert store.integrity() == "ok"
    path = database(tmp_path)
    index = damage_an_index(path, "carol")
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        found = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    assert found != ["ok"] and any(index in line for line in found)
    report = store.integrity()
    assert report != "ok" and report.splitlines() == found, found
