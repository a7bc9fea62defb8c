"""The store protocol's contract (feedback.records.Store), run against both stores: SQLite in a folder and a real
PostgreSQL server started by the tests (tests/postgres.py). Each test is one promise any store must keep."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from feedback import DailyLimitReached, Quotas, Store, StoreFull, export_corrections, open_store
from feedback.export import scope_folder
from feedback.store import read_tables
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.test_feedback import png_bytes

REPO = Path(__file__).resolve().parents[1]
KINDS = ("sqlite", "postgresql")


@pytest.fixture(params=KINDS)
def url(request, tmp_path) -> str:
    """Where a new, empty store of each kind is."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return request.getfixturevalue("postgres_url")


def store_at(url: str, **quotas) -> Store:
    return open_store(url, Quotas(**quotas) if quotas else Quotas())


def flag(store: Store, seed: int, label: str = "positive", reader: str = "alice", **more) -> tuple[int, bool]:
    data = png_bytes(seed)
    args = dict(note="", predicted_label="negative", probability=0.2, model_version="v1", verified=True,
                extension=".png", image_sha256=hashlib.sha256(data).hexdigest())
    args.update(more)
    return store.add(data, more.pop("filename", f"film-{seed}.png"), label, reader, args.pop("note"),
                     args.pop("predicted_label"), args.pop("probability"), args.pop("model_version"), **args)


def at(store: Store, monkeypatch, moment: datetime) -> None:
    """Make the store's clock read `moment` (each store module holds its own `_utc_now`)."""
    monkeypatch.setattr(sys.modules[type(store).__module__], "_utc_now", lambda: moment)


def test_a_new_store_reads_empty_without_being_made(url):
    store = store_at(url)
    assert isinstance(store, Store)
    assert (store.all(), store.count(), store.prediction_counts(), store.predicted_images()) == ([], 0, {}, {})
    assert store.integrity() == "ok" and store.problem() is None
    store.check_quotas("alice", "203.0.113.1")
    assert not store.exists(), "reading or checking quotas must not create the store"


def test_add_then_read_back_with_the_image_bytes(url):
    store = store_at(url)
    data = png_bytes(1)
    sha = hashlib.sha256(data).hexdigest()
    assert flag(store, 1, "negative", note="line one\nline two", probability=0.75, model_version="v7",
                pixel_sha256="b" * 64, client="203.0.113.9") == (1, True)
    assert store.exists()
    [c] = store.for_image(sha)
    assert (c.id, c.image_sha256, c.original_filename, c.correct_label, c.reader, c.note, c.predicted_label,
            c.probability, c.model_version, c.verified, c.pixel_sha256, c.withdrawn_at) == \
        (1, sha, "film-1.png", "negative", "alice", "line one\nline two", "negative", 0.75, "v7", True, "b" * 64, "")
    assert c.image_name == f"{sha}.png" and c.created_at.startswith(datetime.now(timezone.utc).date().isoformat())
    assert store.image_bytes(c) == data
    assert store.all() == [c] and store.count() == 1 and store.for_image("0" * 64) == []
    assert store.integrity() == "ok"


def test_a_repeated_verdict_is_stored_once_and_a_changed_one_becomes_the_latest(url):
    store = store_at(url)
    assert flag(store, 2) == (1, True)
    assert flag(store, 2) == (1, False)
    assert flag(store, 2, "negative") == (2, True)
    assert flag(store, 2, "positive") == (3, True)
    assert flag(store, 2, reader="bob") == (4, True)
    assert [c.correct_label for c in store.all()] == ["positive", "negative", "positive", "positive"]


def test_one_image_stored_once_keeps_its_first_extension(url):
    store = store_at(url)
    flag(store, 3, extension=".jpg")
    flag(store, 3, reader="bob", extension=".png")
    assert {c.image_name for c in store.all()} == {hashlib.sha256(png_bytes(3)).hexdigest() + ".jpg"}


def test_invalid_records_are_refused_and_nothing_is_stored(url):
    store = store_at(url)
    for bad in (dict(image_sha256="not-a-hash"), dict(probability=1.5), dict(pixel_sha256="xyz"),
                dict(note="\u202eevil"), dict(reader=""), dict(predicted_label="out_of_scope")):
        reader = bad.pop("reader", "alice")
        with pytest.raises(ValueError):
            flag(store, 4, reader=reader, **bad)
    assert store.count() == 0


def test_withdraw_only_ones_own_once_kept_in_history_and_left_out_of_export(url, tmp_path):
    store = store_at(url)
    flag(store, 5)
    flag(store, 6, reader="bob")
    with pytest.raises(ValueError, match="only their own"):
        store.withdraw(2, "alice")
    with pytest.raises(ValueError):
        store.withdraw(99, "alice")
    withdrawn = store.withdraw(1, "alice")
    assert withdrawn.withdrawn_at and store.withdraw(1, "alice") == withdrawn
    assert [c.withdrawn_at != "" for c in store.all()] == [True, False]
    counts = export_corrections(store, tmp_path / "out")
    assert (counts["covid"], counts["skipped_withdrawn"]) == (1, 1)


def test_verdicts_on_inputs_are_kept_apart_from_labels(url, tmp_path):
    store = store_at(url)
    flag(store, 7, "out_of_scope", predicted_label="out_of_scope", probability=0.0)
    flag(store, 8, "in_scope", predicted_label="positive", probability=0.9)
    with pytest.raises(ValueError, match="in_scope"):
        flag(store, 9, "negative", predicted_label="out_of_scope", probability=0.0)
    assert [c.about_input for c in store.all()] == [True, True]
    counts = export_corrections(store, tmp_path / "out", scope_out=scope_folder(tmp_path / "out"))
    assert (counts["images"], counts["input_verdicts"], counts["in_scope"], counts["out_of_scope"]) == (0, 2, 1, 1)


def test_record_and_image_quotas(url):
    store = store_at(url, records=2)
    flag(store, 10)
    flag(store, 11)
    with pytest.raises(StoreFull, match="2 corrections"):
        store.check_quotas("carol")
    with pytest.raises(StoreFull):
        flag(store, 12, reader="carol")
    tight = store_at(url, store_bytes=len(png_bytes(10)) + len(png_bytes(11)))
    with pytest.raises(StoreFull, match="full"):
        tight.check_quotas("carol")
    with pytest.raises(StoreFull, match="full"):
        flag(tight, 12, reader="carol")
    assert store.count() == 2


def test_daily_limits_per_reader_and_per_client_end_with_the_utc_day(url, monkeypatch):
    store = store_at(url, daily_flags=2, daily_flags_per_client=3)
    at(store, monkeypatch, datetime(2025, 3, 4, 23, 59, tzinfo=timezone.utc))
    flag(store, 13, client="198.51.100.1")
    flag(store, 14, client="198.51.100.1")
    with pytest.raises(DailyLimitReached, match="'alice' has made 2 flags today"):
        store.check_quotas("alice")
    with pytest.raises(DailyLimitReached):
        flag(store, 15)
    flag(store, 15, reader="bob", client="198.51.100.1")
    with pytest.raises(DailyLimitReached, match="from your address"):
        flag(store, 16, reader="carol", client="198.51.100.1")
    flag(store, 16, reader="carol", client="198.51.100.2")
    at(store, monkeypatch, datetime(2025, 3, 5, 0, 0, tzinfo=timezone.utc))
    store.check_quotas("alice", "198.51.100.1")
    flag(store, 17, client="198.51.100.1")
    assert store.count() == 5


def test_prediction_counts_and_a_bounded_list_of_predicted_images(url):
    store = store_at(url, predicted_images=2)
    shas = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    for sha in shas:
        store.count_prediction("v1", sha)
    store.count_prediction("v1", shas[2])
    store.count_prediction("v2")
    with pytest.raises(ValueError):
        store.count_prediction("")
    assert store.prediction_counts() == {"v1": 4, "v2": 1}
    assert store.predicted_images() == {"v1": set(shas[1:])}
    assert store.count() == 0 and store.integrity() == "ok"


def test_location_and_files_name_no_password_and_no_folder_to_serve_beyond_the_stores_own(url):
    store = store_at(url.replace("postgres@", "postgres:s3cret@"))
    assert "s3cret" not in store.location and store.location
    assert store.files is None if url.startswith("postgresql") else store.files == Path(url)


def test_the_same_flags_export_identically_from_both_stores(tmp_path, postgres_url):
    """The export (and so training) cannot tell which store the corrections came from."""
    exports = []
    for name, url in (("sqlite", str(tmp_path / "store")), ("postgresql", postgres_url)):
        store = store_at(url)
        flag(store, 20)
        flag(store, 20, "negative", reader="bob")
        flag(store, 20, reader="carol", verified=False)
        flag(store, 21, "negative", pixel_sha256="c" * 64)
        flag(store, 22, "uncertain")
        flag(store, 23, "out_of_scope", predicted_label="out_of_scope", probability=0.0)
        store.withdraw(flag(store, 24)[0], "alice")
        out = tmp_path / name / "export"
        counts = export_corrections(store, out, include_unverified=True, scope_out=scope_folder(out))
        exports.append((counts, {p.relative_to(out.parent).as_posix(): p.read_bytes()
                                 for p in sorted(out.parent.rglob("*")) if p.is_file()}))
    assert exports[0] == exports[1] and exports[0][0]["covid"] == 1


# Today's SQLite stores (schema 0 and schema 1, tests/fixtures/build_store_v*.py) and their copy to PostgreSQL.

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def files(folder: Path) -> dict[str, bytes]:
    """Every file under folder by its relative path, with its bytes (SQLite's WAL readers' -wal and -shm aside)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def exported(store: Store, out: Path, include_unverified: bool) -> dict[str, bytes]:
    export_corrections(store, out / "export", include_unverified=include_unverified,
                       scope_out=scope_folder(out / "export"))
    return files(out)


def fixture_exports(version: str, include_unverified: bool) -> dict[str, bytes]:
    name = "export_all" if include_unverified else "export"
    return {path.replace(name, "export", 1): data for path, data in files(FIXTURES / f"store_{version}").items()
            if path.split("/")[0] in (name, f"{name}-gate")}


@pytest.fixture(params=("v0", "v1"))
def old_store(request, tmp_path) -> tuple[str, Path]:
    """A copy of a store made by the code of an earlier release, and its version."""
    shutil.copytree(FIXTURES / f"store_{request.param}" / "store", tmp_path / "old")
    return request.param, tmp_path / "old"


def test_a_store_from_an_earlier_release_opens_unchanged_and_exports_identically(old_store, tmp_path):
    version, root = old_store
    before = files(root)
    store = open_store(str(root))
    for include_unverified in (False, True):
        out = tmp_path / f"out-{include_unverified}"
        assert exported(store, out, include_unverified) == fixture_exports(version, include_unverified)
    assert store.integrity() == "ok" and files(root) == before


def test_migrate_copies_an_earlier_release_store_to_postgresql_and_exports_identically(old_store, postgres_url,
                                                                                          tmp_path):
    import psycopg

    version, root = old_store
    before, source = files(root), open_store(str(root))
    result = subprocess.run([sys.executable, "-m", "feedback", "migrate", "--to", postgres_url, "--root", str(root)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = source.all()
    assert f"copied {len(rows)} corrections" in result.stdout and "the same" in result.stdout
    copy = open_store(postgres_url)
    assert [c.id for c in copy.all()] == [c.id for c in rows] and copy.integrity() == "ok"
    assert copy.prediction_counts() == source.prediction_counts()
    assert copy.predicted_images() == source.predicted_images()
    for include_unverified in (False, True):
        out = tmp_path / f"out-{include_unverified}"
        assert exported(copy, out, include_unverified) == fixture_exports(version, include_unverified)
    assert files(root) == before, "migrating only reads the source"
    with psycopg.connect(postgres_url) as conn:
        clients = conn.execute("SELECT id, client FROM corrections ORDER BY id").fetchall()
    assert clients == [(row["id"], row["client"]) for row in read_tables(root)["corrections"]]
    assert flag(copy, 99, reader="zed")[0] == len(rows) + 1, "new records continue after the copied ids"


def test_migrate_refuses_a_database_that_holds_a_store_and_leaves_it_as_it_was(postgres_url, tmp_path):
    from feedback.migrate import migrate

    source = store_at(str(tmp_path / "store"))
    flag(source, 30)
    target = open_store(postgres_url)
    flag(target, 31, reader="bob")
    with pytest.raises(ValueError, match="empty database"):
        migrate(source, target)
    assert [c.reader for c in target.all()] == ["bob"]
    result = subprocess.run([sys.executable, "-m", "feedback", "migrate", "--to", str(tmp_path / "x"), "--root",
                             str(tmp_path / "store")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "PostgreSQL" in result.stderr


def test_the_protocol_and_the_package_load_no_database_driver_the_store_does_not_need():
    """feedback.records names no database; `import feedback` (the app, an SQLite store) does not load psycopg."""
    probe = ("import sys, importlib.util as u; spec = u.spec_from_file_location('records', 'feedback/records.py'); "
             "sys.modules['records'] = m = u.module_from_spec(spec); spec.loader.exec_module(m); "
             "print('sqlite3' in sys.modules, 'psycopg' in sys.modules); "
             "import feedback; feedback.open_store('x'); print('psycopg' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False", "False"]
