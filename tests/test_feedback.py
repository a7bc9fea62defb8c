"""Tests of the radiologist-corrections store, reader accounts and training export."""

from __future__ import annotations

import csv
import hashlib
import io
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import settings
from feedback import CorrectionStore, check_reader, export_corrections, hash_password, load_readers
from feedback.export import consensus_label
from feedback.store import _connect

REPO = Path(__file__).resolve().parents[1]


def png_bytes(seed: int) -> bytes:
    """A small distinct grey PNG per seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def flag(root, image: bytes, label: str = "positive", reader: str = "alice", quotas=None,
         **overrides) -> tuple[int, bool]:
    args = dict(filename="scan.png", note="", predicted_label="negative", probability=0.2, model_version="v1",
                verified=True)
    args.update(overrides)
    return CorrectionStore(root, quotas).add(image, correct_label=label, reader=reader, **args)


def add(root, *args) -> tuple[int, bool]:
    """A correction added to the store in `root` (a module-level function, so another process can run it)."""
    return CorrectionStore(root).add(*args)


def test_add_then_read_back(tmp_path):
    image = png_bytes(0)
    record_id, created = CorrectionStore(tmp_path).add(
        image, "/tmp/gradio/abc/patient 7.PNG", "positive", " alice ", "GGO left lower lobe",
        "negative", 0.31, "vgg16-2024",
    )
    assert created
    sha = hashlib.sha256(image).hexdigest()
    [c] = CorrectionStore(tmp_path).for_image(sha)
    assert (c.id, c.image_sha256, c.correct_label, c.reader) == (record_id, sha, "positive", "alice")
    assert (c.original_filename, c.note, c.predicted_label) == ("patient 7.PNG", "GGO left lower lobe", "negative")
    assert (c.probability, c.model_version) == (0.31, "vgg16-2024")
    assert c.created_at.endswith("+00:00")
    assert CorrectionStore(tmp_path).all() == [c]
    assert CorrectionStore(tmp_path).for_image(hashlib.sha256(b"other").hexdigest()) == []


def test_image_copy_named_by_sha256_with_same_bytes(tmp_path):
    image = png_bytes(1)
    flag(tmp_path, image, filename="a.PNG")
    flag(tmp_path, image, reader="bob", filename="b.jpeg")
    sha = hashlib.sha256(image).hexdigest()
    assert [p.name for p in (tmp_path / "images").iterdir()] == [f"{sha}.png"]
    assert (tmp_path / "images" / f"{sha}.png").read_bytes() == image
    assert {c.image_path for c in CorrectionStore(tmp_path).all()} == {str(tmp_path / "images" / f"{sha}.png")}


def test_duplicate_flag_is_one_record_with_same_id(tmp_path):
    image = png_bytes(2)
    first = flag(tmp_path, image, note="first")
    again = flag(tmp_path, image, note="second", filename="renamed.png")
    assert first == (first[0], True)
    assert again == (first[0], False)
    [c] = CorrectionStore(tmp_path).all()
    assert c.note == "first"


def test_different_label_or_reader_is_a_new_record(tmp_path):
    image = png_bytes(3)
    ids = {flag(tmp_path, image)[0], flag(tmp_path, image, label="negative")[0], flag(tmp_path, image, reader="bob")[0]}
    assert len(ids) == 3
    assert len(CorrectionStore(tmp_path).all()) == 3


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(label="covid"), "correct_label"),
        (dict(reader="  "), "reader"),
        (dict(image=b""), "empty"),
        (dict(note="x" * 2001), "2000"),
        (dict(probability=1.5), "probability"),
        (dict(probability=-0.1), "probability"),
        (dict(probability=float("nan")), "probability"),
    ],
)
def test_invalid_input_raises_clear_error(tmp_path, change, message):
    args = dict(image=png_bytes(4), label="positive", reader="alice")
    args.update(change)
    with pytest.raises(ValueError, match=message):
        flag(tmp_path, args.pop("image"), **args)
    assert CorrectionStore(tmp_path).all() == []


def test_bad_sha_lookup_raises(tmp_path):
    with pytest.raises(ValueError, match="SHA-256"):
        CorrectionStore(tmp_path).for_image("not-a-hash")


def _combos() -> list[tuple[int, str, str]]:
    """50 distinct (image seed, reader, label) combinations."""
    readers = ["alice", "bob", "carol", "dan", "erin"]
    return [(seed, reader, ("positive", "negative")[(seed + i) % 2]) for seed in range(10) for i, reader in enumerate(readers)]


def test_fifty_corrections_from_ten_threads_all_land_once(tmp_path):
    combos = _combos()
    calls = combos + combos[::3] + combos[:5]
    images = {seed: png_bytes(100 + seed) for seed in range(10)}
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda c: flag(tmp_path, images[c[0]], label=c[2], reader=c[1]), calls))

    assert sum(created for _, created in results) == 50
    id_of = {}
    for call, (record_id, _) in zip(calls, results):
        assert id_of.setdefault(call, record_id) == record_id
    rows = CorrectionStore(tmp_path).all()
    assert len(rows) == 50
    assert len({(r.image_sha256, r.reader, r.correct_label) for r in rows}) == 50
    assert sorted(r.id for r in rows) == sorted(id_of.values())
    assert len(list((tmp_path / "images").iterdir())) == 10
    assert CorrectionStore(tmp_path).integrity() == "ok"


def test_second_process_writing_at_the_same_time(tmp_path):
    images = [png_bytes(200 + seed) for seed in range(10)]
    in_process = [(tmp_path, images[seed], "x.png", label, reader, "", "negative", 0.4, "v1")
                  for seed, reader, label in _combos()[:25]]
    other_process = [(tmp_path, images[seed], "x.png", label, reader, "", "negative", 0.4, "v1")
                     for seed, reader, label in _combos()[20:]]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as processes, ThreadPoolExecutor(4) as threads:
        remote = processes.map(add, *zip(*other_process))
        local = threads.map(add, *zip(*in_process))
        results = list(remote) + list(local)

    assert sum(created for _, created in results) == 50
    assert len(CorrectionStore(tmp_path).all()) == 50


def test_the_feedback_folder_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XRAY_FEEDBACK_DIR", str(tmp_path / "fb"))
    assert settings.feedback_dir() == tmp_path / "fb"


def test_wal_mode_and_full_sync(tmp_path):
    flag(tmp_path, png_bytes(5))
    with sqlite3.connect(tmp_path / "corrections.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = _connect(tmp_path)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    conn.close()


def test_acknowledged_correction_survives_sigkill(tmp_path):
    script = (
        "import os, signal, sys\n"
        "from feedback import CorrectionStore\n"
        "print(CorrectionStore(sys.argv[1]).add(b'raw image', 'a.png', 'negative', 'alice', '', 'positive', 0.9,"
        " 'v1')[0],"
        " flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    [c] = CorrectionStore(tmp_path).all()
    assert c.id == int(done.stdout) and c.correct_label == "negative"
    assert CorrectionStore(tmp_path).integrity() == "ok"


def test_readers_plain_and_pbkdf2_from_file(tmp_path):
    accounts = tmp_path / "readers.txt"
    accounts.write_text(f"# radiologists\nalice:secret:with:colons\n\nbob:{hash_password('pw', iterations=1000)}\n")
    readers = load_readers({"XRAY_READERS_FILE": str(accounts)})
    assert set(readers) == {"alice", "bob"}
    assert check_reader(readers, "alice", "secret:with:colons")
    assert not check_reader(readers, "alice", "secret")
    assert check_reader(readers, "bob", "pw")
    assert not check_reader(readers, "bob", "pW")
    assert not check_reader(readers, "mallory", "pw")


def test_readers_from_env_list():
    readers = load_readers({"XRAY_READERS": "alice:secret, bob:pw"})
    assert readers == {"alice": "secret", "bob": "pw"}
    assert check_reader(readers, "bob", "pw") and not check_reader(readers, "bob", "secret")


def test_hash_password_is_salted():
    first, second = hash_password("pw", iterations=1000), hash_password("pw", iterations=1000)
    assert first != second
    assert first.startswith("pbkdf2_sha256$1000$")


@pytest.mark.parametrize(
    "contents, message",
    [
        ("alice:secret\nbob\n", "line 2"),
        ("alice:secret\n\n:pw\n", "line 3"),
        ("alice:pbkdf2_sha256$many$00$11\n", "line 1"),
        ("alice:a\nalice:b\n", "line 2.*twice"),
    ],
)
def test_malformed_readers_file_names_the_line(tmp_path, contents, message):
    accounts = tmp_path / "readers.txt"
    accounts.write_text(contents)
    with pytest.raises(ValueError, match=message):
        load_readers({"XRAY_READERS_FILE": str(accounts)})


def test_no_accounts_configured_lets_anyone_flag_by_name():
    readers = load_readers({})
    assert readers == {}
    assert check_reader(readers, "dr who", "")
    assert not check_reader(readers, "  ", "")


def test_export_majority_tie_and_uncertain(tmp_path):
    root, out = tmp_path / "store", tmp_path / "export"
    majority, tie, uncertain, changed = (png_bytes(300 + i) for i in range(4))
    flag(root, majority, "positive", "alice")
    flag(root, majority, "positive", "carol")
    flag(root, majority, "negative", "bob")
    flag(root, tie, "positive", "alice")
    flag(root, tie, "negative", "bob")
    flag(root, uncertain, "uncertain", "alice")
    flag(root, changed, "positive", "bob")
    flag(root, changed, "positive", "alice")
    flag(root, changed, "negative", "alice")

    counts = export_corrections(CorrectionStore(root), out)

    sha = {name: hashlib.sha256(data).hexdigest() for name, data in
           [("majority", majority), ("tie", tie), ("uncertain", uncertain), ("changed", changed)]}
    assert counts == {"corrections": 9, "images": 4, "covid": 1, "not_covid": 2, "skipped_uncertain": 1,
                      "skipped_withdrawn": 0, "left_out_unverified": 0, "missing_images": 0, "input_verdicts": 0,
                      "in_scope": 0, "out_of_scope": 0}
    assert (out / "covid" / f"{sha['majority']}.png").read_bytes() == majority
    assert (out / "not_covid" / f"{sha['tie']}.png").read_bytes() == tie
    assert (out / "not_covid" / f"{sha['changed']}.png").read_bytes() == changed
    with open(out / "MANIFEST.csv", newline="") as f:
        rows = {row["sha256"]: row for row in csv.DictReader(f)}
    assert set(rows) == {sha["majority"], sha["tie"], sha["changed"]}
    assert rows[sha["majority"]] == {
        "file": f"covid/{sha['majority']}.png", "label": "covid", "patient_id": f"feedback:{sha['majority']}",
        "source": "feedback", "sha256": sha["majority"], "pixel_sha256": "", "readers": "alice;bob;carol",
        "n_corrections": "3",
    }
    assert rows[sha["changed"]]["readers"] == "alice;bob"
    with pytest.raises(ValueError, match="not empty"):
        export_corrections(CorrectionStore(root), out)


def test_cli_export_and_list(tmp_path):
    root, out = tmp_path / "store", tmp_path / "export"
    flag(root, png_bytes(400), "positive", "alice")
    run = [sys.executable, "-m", "feedback"]
    exported = subprocess.run(run + ["export", "--root", str(root), "--out", str(out)],
                              cwd=REPO, capture_output=True, text=True, check=True)
    assert "covid: 1" in exported.stdout
    listed = subprocess.run(run + ["list", "--root", str(root)], cwd=REPO, capture_output=True, text=True, check=True)
    assert "alice" in listed.stdout and "integrity: ok" in listed.stdout
    missing = subprocess.run(run + ["list", "--root", str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "no feedback store" in missing.stderr


def test_a_readers_latest_verdict_is_the_one_that_counts_and_a_withdrawn_one_counts_no_more(tmp_path):
    root, image = tmp_path / "store", png_bytes(500)
    ids = [flag(root, image, label)[0] for label in ("positive", "negative", "positive")]
    assert ids == [1, 2, 3]
    assert flag(root, image, "positive") == (3, False)
    assert consensus_label(CorrectionStore(root).all()) == "positive"
    flag(root, image, "negative", "bob")
    with pytest.raises(ValueError, match="only their own"):
        CorrectionStore(root).withdraw(4, "alice")
    withdrawn = CorrectionStore(root).withdraw(3, "alice")
    assert withdrawn.withdrawn_at and CorrectionStore(root).withdraw(3, "alice") == withdrawn
    assert [c.id for c in CorrectionStore(root).all()] == [1, 2, 3, 4]
    assert consensus_label(CorrectionStore(root).all()) == "negative"
    CorrectionStore(root).withdraw(4, "bob")
    counts = export_corrections(CorrectionStore(root), tmp_path / "out")
    assert (counts["skipped_withdrawn"], counts["covid"], counts["not_covid"]) == (1, 0, 0)
    assert flag(root, image, "positive") == (5, True)


def test_the_export_groups_by_the_recorded_pixel_identity_and_writes_it(tmp_path):
    root, identity = tmp_path / "store", "ab" * 32
    flag(root, png_bytes(501), "positive", "alice", pixel_sha256=identity)
    flag(root, png_bytes(502), "negative", "alice", pixel_sha256=identity)
    counts = export_corrections(CorrectionStore(root), tmp_path / "out")
    assert (counts["images"], counts["covid"], counts["not_covid"]) == (1, 0, 1)
    with open(tmp_path / "out" / "MANIFEST.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert row["pixel_sha256"] == identity and row["readers"] == "alice"
