"""Reader names and notes are checked before storing; exports and listings cannot carry formulas or escapes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from feedback import CorrectionStore, check_reader, export_corrections, load_readers
from feedback.export import csv_safe
from feedback.store import check_note, clean_reader
from tests.test_feedback import flag, png_bytes

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, cleaned", [
    ("  alice ", "alice"), ("Dr. J. Smith-Jones", "Dr. J. Smith-Jones"), ("reader_07", "reader_07"),
    ("Müller", "Müller"), ("x" * 64, "x" * 64),
])
def test_good_reader_names_are_kept_stripped(name, cleaned):
    assert clean_reader(name) == cleaned


@pytest.mark.parametrize("name, message", [
    ("", "empty"), ("   ", "empty"), ("x" * 65, "at most 64"),
    ("<b>alice</b>", "only letters"), ("alice\nbob", "only letters"), ("=HYPERLINK(\"http://x\")", "only letters"),
    ("alice\x1b[2J", "only letters"), ("al\u202eice", "only letters"), ("a/b", "only letters"),
])
def test_bad_reader_names_are_refused(tmp_path, name, message):
    with pytest.raises(ValueError, match=message):
        clean_reader(name)
    with pytest.raises(ValueError, match=message):
        flag(tmp_path, png_bytes(1), reader=name)
    assert CorrectionStore(tmp_path).all() == []


def test_notes_allow_newlines_and_html_as_text(tmp_path):
    note = "GGO <b>left</b> lower lobe\nsee prior =SUM(A1)"
    flag(tmp_path, png_bytes(2), note=note)
    [c] = CorrectionStore(tmp_path).all()
    assert c.note == note
    assert check_note("x" * 2000) == "x" * 2000


@pytest.mark.parametrize("note, message", [
    ("x" * 10_000, "2000"), ("x" * 2001, "2000"), ("bad\x1b[31m", "control"), ("nul\x00", "control"),
    *((f"looks{ch}fine", "zero-width") for ch in "\u200b\u200c\u200d\u2060\ufeff"),
    ("one\u2028two", "line or paragraph separators"), ("one\u2029two", "line or paragraph separators"),
], ids=lambda value: ascii(value)[:24])
def test_bad_notes_are_refused(tmp_path, note, message):
    with pytest.raises(ValueError, match=message):
        flag(tmp_path, png_bytes(3), note=note)
    assert CorrectionStore(tmp_path).all() == []


def test_stored_filename_has_no_control_characters_and_is_bounded(tmp_path):
    flag(tmp_path, png_bytes(4), filename="/up/load/evil\x1b[2J" + "n" * 400 + ".png")
    [c] = CorrectionStore(tmp_path).all()
    assert "\x1b" not in c.original_filename and len(c.original_filename) == 255


def test_open_mode_accepts_only_valid_names():
    assert check_reader({}, " dr who ", "")
    assert not check_reader({}, "<script>", "")


def test_readers_file_with_an_unusable_name_is_refused(tmp_path):
    accounts = tmp_path / "readers.txt"
    accounts.write_text("alice:pw\n<img src=x>:pw\n")
    with pytest.raises(ValueError, match="line 2.*only letters"):
        load_readers({"XRAY_READERS_FILE": str(accounts)})


@pytest.mark.parametrize("value, safe", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("alice;bob", "alice;bob"), (3, "3"),
])
def test_csv_cells_that_spreadsheets_would_evaluate_are_quoted(value, safe):
    assert csv_safe(value) == safe


def test_export_manifest_neutralises_reader_names(tmp_path):
    root, out = tmp_path / "store", tmp_path / "out"
    flag(root, png_bytes(5), reader="-cmd", verified=True)
    flag(root, png_bytes(5), reader="alice", verified=True)
    export_corrections(CorrectionStore(root), out)
    with open(out / "MANIFEST.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["readers"] == "'-cmd;alice"
    assert row["label"] == "covid" and row["n_corrections"] == "2"


def test_cli_list_cannot_emit_escapes_or_extra_lines(tmp_path):
    flag(tmp_path, png_bytes(6), note="line one\nline two\t<b>", filename="a\x1b[2Jb.png")
    listed = subprocess.run([sys.executable, "-m", "feedback", "list", "--root", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, check=True)
    assert "\x1b" not in listed.stdout
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert "'alice'" in lines[0] and "'line one\\nline two\\t<b>'" in lines[0]
