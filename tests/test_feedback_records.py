"""Record ids, verified and unverified flags, and upgrading a store made by the previous version."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from pathlib import Path

from feedback import CorrectionStore, export_corrections
from tests.test_feedback import flag, png_bytes

REPO = Path(__file__).resolve().parents[1]

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_sha256 TEXT NOT NULL,
    image_path TEXT NOT NULL,
    original_filename TEXT NOT NULL,
    correct_label TEXT NOT NULL CHECK (correct_label IN ('positive', 'negative', 'uncertain')),
    reader TEXT NOT NULL,
    note TEXT NOT NULL,
    predicted_label TEXT NOT NULL,
    probability REAL NOT NULL CHECK (probability BETWEEN 0 AND 1),
    model_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (image_sha256, reader, correct_label)
)
"""


def test_repeated_flag_does_not_use_up_an_id(tmp_path):
    a, b = png_bytes(10), png_bytes(11)
    assert [flag(tmp_path, a), flag(tmp_path, a), flag(tmp_path, b)] == [(1, True), (1, False), (2, True)]
    assert [c.id for c in CorrectionStore(tmp_path).all()] == [1, 2]


def test_verified_and_unverified_are_stored_as_given(tmp_path):
    flag(tmp_path, png_bytes(12), reader="alice", verified=True)
    flag(tmp_path, png_bytes(12), reader="walk-in", verified=False)
    assert [(c.reader, c.verified) for c in CorrectionStore(tmp_path).all()] == [("alice", True), ("walk-in", False)]


def test_unverified_flags_are_left_out_of_the_export_unless_asked(tmp_path):
    root = tmp_path / "store"
    verified, unverified = png_bytes(13), png_bytes(14)
    flag(root, verified, "positive", "alice", verified=True)
    flag(root, unverified, "negative", "walk-in", verified=False)
    flag(root, verified, "negative", "walk-in", verified=False)

    counts = export_corrections(CorrectionStore(root), tmp_path / "default")
    assert (counts["corrections"], counts["images"], counts["left_out_unverified"]) == (1, 1, 2)
    assert [p.parent.name for p in (tmp_path / "default").rglob("*.png")] == ["covid"]

    counts = export_corrections(CorrectionStore(root), tmp_path / "all", include_unverified=True)
    assert (counts["corrections"], counts["images"], counts["left_out_unverified"]) == (3, 2, 0)
    with open(tmp_path / "all" / "MANIFEST.csv", newline="") as f:
        readers = sorted(row["readers"] for row in csv.DictReader(f))
    assert readers == ["alice;walk-in", "walk-in"]


def test_cli_export_include_unverified_and_list_shows_status(tmp_path):
    root = tmp_path / "store"
    flag(root, png_bytes(15), "positive", "alice", verified=True)
    flag(root, png_bytes(16), "negative", "walk-in", verified=False)
    run = [sys.executable, "-m", "feedback"]
    default = subprocess.run(run + ["export", "--root", str(root), "--out", str(tmp_path / "a")],
                             cwd=REPO, capture_output=True, text=True, check=True)
    assert "1 corrections" in default.stdout and "1 unverified" in default.stdout
    everything = subprocess.run(
        run + ["export", "--root", str(root), "--out", str(tmp_path / "b"), "--include-unverified"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    assert "2 corrections" in everything.stdout
    listed = subprocess.run(run + ["list", "--root", str(root)], cwd=REPO, capture_output=True, text=True, check=True)
    first, second = listed.stdout.splitlines()[:2]
    assert " verified " in first and "'alice'" in first
    assert " unverified " in second and "'walk-in'" in second


def test_old_store_is_migrated_and_its_rows_count_as_unverified(tmp_path):
    image = png_bytes(17)
    with sqlite3.connect(tmp_path / "corrections.sqlite3") as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO corrections (image_sha256, image_path, original_filename, correct_label, reader, note,"
            " predicted_label, probability, model_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("a" * 64, "images/" + "a" * 64 + ".png", "old.png", "negative", "alice", "from v1", "positive", 0.9, "v0",
             "2024-01-02T03:04:05.000000+00:00"),
        )
    conn.close()

    [old] = CorrectionStore(tmp_path).all()
    assert (old.id, old.reader, old.note, old.verified) == (1, "alice", "from v1", False)
    assert flag(tmp_path, image, verified=True) == (2, True)
    assert flag(tmp_path, image, verified=True) == (2, False)
    assert [c.verified for c in CorrectionStore(tmp_path).all()] == [False, True]
    assert CorrectionStore(tmp_path).integrity() == "ok"
    flag(tmp_path, image, "negative", verified=True)
    assert flag(tmp_path, image, verified=True) == (4, True), "the old unique key (image, reader, label) is gone"
