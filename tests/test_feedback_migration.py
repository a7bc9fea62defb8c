"""The store's versioned schema: a store made before versions opens unchanged and exports identically; verdicts on
inputs (for the input check) are stored, never as COVID-19 labels of refused inputs, and exported apart."""

from __future__ import annotations

import csv
import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from feedback import CorrectionStore, StoreUnwritable, export_corrections
from feedback.export import scope_folder
from feedback.store import DB_NAME, SCHEMA_VERSION
from tests.test_feedback import png_bytes

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "store_v0"


def files(folder: Path) -> dict[str, bytes]:
    """Every file under folder by its relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_version(root: Path) -> int:
    conn = sqlite3.connect(root / DB_NAME)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def old_store(tmp_path) -> Path:
    """A copy of the store made by the code from before schema versions (tests/fixtures/build_store_v0.py)."""
    root = tmp_path / "store"
    shutil.copytree(FIXTURE / "store", root)
    return root


def refused_input_verdict(store: CorrectionStore, seed: int, label: str, reader: str = "alice", **more):
    data = png_bytes(seed)
    return store.add(data, f"photo-{seed}.png", label, reader, "", "out_of_scope", 0.0, "v3", verified=True,
                     extension=".png", image_sha256=hashlib.sha256(data).hexdigest(), **more)


def test_a_store_from_before_versions_reads_and_exports_as_it_did_without_being_written(old_store, tmp_path):
    before = files(old_store)
    store = CorrectionStore(old_store)
    assert [c.correct_label for c in store.all()] == ["positive", "positive", "negative", "uncertain", "positive",
                                                      "positive", "negative", "positive"]
    counts = export_corrections(store, tmp_path / "export", scope_out=tmp_path / "gate")
    export_corrections(store, tmp_path / "export_all", include_unverified=True, scope_out=tmp_path / "gate_all")
    assert files(tmp_path / "export") == files(FIXTURE / "export")
    assert files(tmp_path / "export_all") == files(FIXTURE / "export_all")
    assert counts["input_verdicts"] == 0 and not (tmp_path / "gate").exists() and not (tmp_path / "gate_all").exists()
    after = {name: data for name, data in files(old_store).items() if not name.endswith(("-wal", "-shm"))}
    assert after == before, "reading or exporting changed the database or the images (SQLite's WAL readers add -wal "\
                            "and -shm beside it)"


def test_its_first_write_migrates_it_keeping_every_row_and_the_export(old_store, tmp_path):
    store = CorrectionStore(old_store)
    rows = store.all()
    clients = sqlite3.connect(old_store / DB_NAME).execute("SELECT id, client FROM corrections ORDER BY id").fetchall()
    assert user_version(old_store) == 0
    record, created = refused_input_verdict(store, 900, "in_scope")
    assert created and record == len(rows) + 1
    assert user_version(old_store) == SCHEMA_VERSION
    assert store.all()[: len(rows)] == rows
    assert sqlite3.connect(old_store / DB_NAME).execute(
        "SELECT id, client FROM corrections WHERE id <= ? ORDER BY id", (len(rows),)).fetchall() == clients
    assert store.integrity() == "ok" and store.prediction_counts() == {"v1": 3, "v2": 1}

    counts = export_corrections(store, tmp_path / "export", scope_out=tmp_path / "gate")
    assert files(tmp_path / "export") == files(FIXTURE / "export"), "a verdict on an input changed the labels"
    assert (counts["input_verdicts"], counts["in_scope"], counts["out_of_scope"]) == (1, 1, 0)
    name = f"{hashlib.sha256(png_bytes(900)).hexdigest()}.png"
    assert set(files(tmp_path / "gate")) == {f"in_scope/{name}", "MANIFEST.csv"}


def test_a_refused_input_gets_no_covid_19_label(tmp_path):
    store = CorrectionStore(tmp_path / "store")
    for label in ("positive", "negative", "uncertain"):
        with pytest.raises(ValueError, match="refused this image, so it gets no COVID-19 label"):
            refused_input_verdict(store, 1, label)
    assert store.all() == []
    with pytest.raises(ValueError, match="correct_label must be one of"):
        refused_input_verdict(store, 1, "adult")


def test_verdicts_on_inputs_are_exported_apart_by_the_readers_consensus(tmp_path):
    store = CorrectionStore(tmp_path / "store")
    refused_input_verdict(store, 1, "in_scope", "alice")
    refused_input_verdict(store, 1, "in_scope", "bob")
    refused_input_verdict(store, 1, "out_of_scope", "carol")
    refused_input_verdict(store, 2, "out_of_scope", "alice")
    store.withdraw(refused_input_verdict(store, 3, "in_scope", "alice")[0], "alice")
    counts = export_corrections(store, tmp_path / "export", scope_out=tmp_path / "gate")
    assert (counts["corrections"], counts["input_verdicts"], counts["in_scope"], counts["out_of_scope"],
            counts["skipped_withdrawn"]) == (0, 5, 1, 1, 1)
    assert files(tmp_path / "export") == {"MANIFEST.csv": (tmp_path / "export" / "MANIFEST.csv").read_bytes()}
    with open(tmp_path / "gate" / "MANIFEST.csv", newline="") as f:
        rows = {row["sha256"]: row for row in csv.DictReader(f)}
    first, second = (hashlib.sha256(png_bytes(seed)).hexdigest() for seed in (1, 2))
    assert rows[first]["label"] == "in_scope" and rows[first]["readers"] == "alice;bob;carol"
    assert rows[first]["model_said"] == "out_of_scope" and rows[first]["n_corrections"] == "3"
    assert rows[second]["file"] == f"out_of_scope/{second}.png"


def test_the_command_line_export_writes_the_verdicts_on_inputs_beside_the_labels(old_store, tmp_path):
    refused_input_verdict(CorrectionStore(old_store), 5, "out_of_scope")
    out = tmp_path / "corrections"
    done = subprocess.run([sys.executable, "-m", "feedback", "export", "--root", str(old_store), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert files(out) == files(FIXTURE / "export")
    assert scope_folder(out) == tmp_path / "corrections-gate"
    assert "1 verdicts on inputs" in done.stdout and "out_of_scope: 1" in done.stdout
    assert any(name.startswith("out_of_scope/") for name in files(scope_folder(out)))


def test_a_store_from_a_newer_version_is_read_but_never_written(old_store):
    conn = sqlite3.connect(old_store / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = CorrectionStore(old_store)
    assert len(store.all()) == 8
    with pytest.raises(StoreUnwritable, match="made by a newer version of this app"):
        refused_input_verdict(store, 7, "in_scope")
    assert len(store.all()) == 8
