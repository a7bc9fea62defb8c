"""Durable SQLite store of radiologists' corrections, with one stored copy of each flagged image (CorrectionStore)."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from feedback.records import (  # noqa: F401 (feedback.store's names from before feedback.records, kept importable)
    IMAGES_DIR,
    LABELS,
    MAX_FILENAME_CHARS,
    MAX_NOTE_CHARS,
    MAX_PREDICTED_IMAGES,
    MAX_READER_CHARS,
    REFUSED_INPUT,
    SCOPE_LABELS,
    VERDICTS,
    Correction,
    DailyLimitReached,
    QuotaExceeded,
    Quotas,
    StoreFull,
    StoreUnreadable,
    StoreUnwritable,
    check_limits,
    check_note,
    clean_reader,
    client_hash,
    day_bounds,
    digest,
    new_record,
    quotas_now,
    repeats_latest,
    store_full,
    timestamp,
)
from feedback.records import utc_now as _utc_now

SCHEMA_VERSION = 1
"""The store's schema, kept in the database as PRAGMA user_version: 0 before versions (diagnoses only), 1 with the
input-check verdicts (SCOPE_LABELS)."""
DB_NAME = "corrections.sqlite3"
LOCK_NAME = "corrections.lock"
BUSY_TIMEOUT_S = 60.0
MIN_FREE_BYTES = 8 * 2**20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_sha256 TEXT NOT NULL,
    image_path TEXT NOT NULL,
    original_filename TEXT NOT NULL,
    correct_label TEXT NOT NULL
        CHECK (correct_label IN ('positive', 'negative', 'uncertain', 'in_scope', 'out_of_scope')),
    reader TEXT NOT NULL,
    note TEXT NOT NULL,
    predicted_label TEXT NOT NULL,
    probability REAL NOT NULL CHECK (probability BETWEEN 0 AND 1),
    model_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
    pixel_sha256 TEXT NOT NULL DEFAULT '',
    withdrawn_at TEXT,
    client TEXT NOT NULL DEFAULT ''
)
"""
_PREDICTIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    model_version TEXT PRIMARY KEY,
    count INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0)
)
"""
_PREDICTED_IMAGES_SCHEMA = """
CREATE TABLE IF NOT EXISTS predicted_images (
    model_version TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    PRIMARY KEY (model_version, image_sha256)
)
"""
_COLUMNS = (
    "id, image_sha256, image_path, original_filename, correct_label, reader, note,"
    " predicted_label, probability, model_version, created_at, verified, pixel_sha256, withdrawn_at"
)
def _create_private(path: Path) -> None:
    """Create the file owner-only (0600) if it is missing, without opening an existing one."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _restrict(root: Path) -> None:
    """Take group and other permissions off the database, its -wal and -shm, and the lock file (by path only)."""
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME):
        try:
            if os.stat(root / name).st_mode & 0o077:
                os.chmod(root / name, 0o600)
        except FileNotFoundError:
            continue


def _connect(root: Path) -> sqlite3.Connection:
    """Open (creating if needed, owner-only) the store's database; the caller owns and closes the connection."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Set-up is serialised: switching a new database to WAL fails at once (no busy wait) if another connection is
    # open. The database file is made 0600 before SQLite opens it, so its -wal and -shm inherit that mode.
    # Only the lock file is opened here: closing a descriptor of the database would drop SQLite's POSIX locks.
    lock = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _create_private(root / DB_NAME)
        conn = sqlite3.connect(root / DB_NAME, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA journal_mode = WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute(_SCHEMA)
                _migrate(conn)
            _restrict(root)
        except BaseException:
            conn.close()
            raise
    finally:
        os.close(lock)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an earlier version up to SCHEMA_VERSION, keeping every row as it was (rows from
    before accounts count as unverified); refuse one made by a newer version. Runs once per database: a connection
    to one already at SCHEMA_VERSION skips it."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"it was made by a newer version of this app (store schema {version}; this one "
                                    f"knows up to {SCHEMA_VERSION})")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(corrections)")}
    if "verified" not in columns:
        conn.execute(
            "ALTER TABLE corrections ADD COLUMN verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1))"
        )
    if "client" not in columns:
        conn.execute("ALTER TABLE corrections ADD COLUMN client TEXT NOT NULL DEFAULT ''")
    (table,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'corrections'").fetchone()
    if "UNIQUE" in table or "'in_scope'" not in table:
        _rebuild(conn)
    conn.execute("CREATE INDEX IF NOT EXISTS corrections_by_reader_time ON corrections (reader, created_at)")
    conn.execute("CREATE INDEX IF NOT EXISTS corrections_by_client_time ON corrections (client, created_at)")
    conn.execute(_PREDICTIONS_SCHEMA)
    conn.execute(_PREDICTED_IMAGES_SCHEMA)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _rebuild(conn: sqlite3.Connection) -> None:
    """Copy every row, every column and id as it was, into a table of the current schema, in one transaction (SQLite
    cannot change a table's constraints in place): an earlier schema's unique key (image, reader, label) kept a
    reader's repeated verdict from being their latest, and schema 0 allowed only diagnoses (LABELS) as verdicts."""
    before = [row[1] for row in conn.execute("PRAGMA table_info(corrections)")]
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE corrections RENAME TO corrections_before_rebuild")
        conn.execute(_SCHEMA)
        now = {row[1] for row in conn.execute("PRAGMA table_info(corrections)")}
        kept = ", ".join(c for c in before if c in now)
        conn.execute(f"INSERT INTO corrections ({kept}) SELECT {kept} FROM corrections_before_rebuild")
        conn.execute("DROP TABLE corrections_before_rebuild")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _connect_read(root: Path) -> sqlite3.Connection:
    """A read-only connection that writes nothing (no lock file, no schema change); immutable where SQLite cannot
    create the WAL index beside the database (a read-only folder)."""
    uri = (root / DB_NAME).absolute().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _read(root: Path, where: str = "", params: tuple = ()) -> list[Correction]:
    root = root.absolute()
    if not (root / DB_NAME).exists():
        return []
    conn = _connect_read(root)
    try:
        if "corrections" not in _tables(conn):
            return []
        # A store made before a column (not migrated yet, as reading never writes) reads its default: unverified,
        # no pixel identity, not withdrawn.
        columns = {row[1] for row in conn.execute("PRAGMA table_info(corrections)")}
        defaults = {"verified": "0", "pixel_sha256": "''", "withdrawn_at": "NULL"}
        selected = ", ".join(c if c in columns else defaults.get(c, c) for c in _COLUMNS.replace(" ", "").split(","))
        rows = conn.execute(f"SELECT {selected} FROM corrections {where} ORDER BY id", params).fetchall()
    finally:
        conn.close()
    return [Correction(*row[:2], str(root / row[2]), *row[3:-3], verified=bool(row[-3]), pixel_sha256=row[-2],
                       withdrawn_at=row[-1] or "") for row in rows]


def read_tables(root: Path) -> dict[str, list[dict]]:
    """Every row of the store's tables as stored, for copying to another store (python -m feedback migrate):
    corrections with every column (one a store made before it lacks reads its default), prediction counts, predicted
    images in the order they were noted; reads only, empty when there is no database."""
    tables: dict[str, list[dict]] = {"corrections": [], "predictions": [], "predicted_images": []}
    if not (root / DB_NAME).exists():
        return tables
    defaults = {"verified": 0, "pixel_sha256": "", "withdrawn_at": None, "client": ""}
    with _reading():
        conn = _connect_read(root)
        try:
            conn.row_factory = sqlite3.Row
            present = _tables(conn)
            order = {"corrections": "id", "predictions": "model_version", "predicted_images": "rowid"}
            for table in tables:
                if table in present:
                    rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order[table]}").fetchall()
                    tables[table] = [dict(row) for row in rows]
        finally:
            conn.close()
    tables["corrections"] = [{**defaults, **row} for row in tables["corrections"]]
    return tables


def _reason(error: BaseException) -> str:
    """Why using the store failed, in words for the person flagging (no server paths)."""
    code, text = getattr(error, "errno", None), str(error).lower()
    if code == errno.EROFS or "readonly" in text or "read-only" in text:
        return "its file system is read-only"
    if code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text:
        return "the disk is full"
    if code in (errno.EACCES, errno.EPERM):
        return "the app is not allowed to write there"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return "its path is not a folder"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


@contextmanager
def _failures_as(kind: type[OSError], done: str) -> Iterator[None]:
    """Turn the operating system's and SQLite's failures into `kind`, saying what cannot be `done`, and why in words."""
    try:
        yield
    except (StoreUnwritable, StoreUnreadable):
        raise
    except (OSError, sqlite3.Error) as error:
        raise kind(f"the corrections store cannot be {done}: {_reason(error)}") from error


def _writing() -> AbstractContextManager[None]:
    return _failures_as(StoreUnwritable, "written")


def _reading() -> AbstractContextManager[None]:
    return _failures_as(StoreUnreadable, "read")


def _problem(root: Path) -> str | None:
    """Why the store cannot take a correction now (read-only, full disk, not a folder), or None; writes nothing."""
    existing = root.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return _reason(OSError(errno.ENOTDIR, "not a folder"))
    usage = os.statvfs(existing)
    if usage.f_flag & os.ST_RDONLY:
        return _reason(OSError(errno.EROFS, "read-only"))
    database = Path(root) / DB_NAME
    if not os.access(existing, os.W_OK) or (database.exists() and not os.access(database, os.W_OK)):
        return _reason(OSError(errno.EACCES, "permission denied"))
    if usage.f_bavail * usage.f_frsize < MIN_FREE_BYTES:
        return _reason(OSError(errno.ENOSPC, "no space"))
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stored_bytes(images: Path) -> int:
    """Bytes taken by the files in the images folder."""
    with os.scandir(images) as entries:
        return sum(entry.stat().st_size for entry in entries if entry.is_file(follow_symlinks=False))


def _store_image(root: Path, image_bytes: bytes, sha256: str, suffix: str, quota_bytes: int) -> str:
    """Write the image once under images/ as <sha256><suffix>, atomically and durably; return its path under root."""
    images = root / IMAGES_DIR
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = sorted(images.glob(f"{sha256}*"))
    if existing:
        return f"{IMAGES_DIR}/{existing[0].name}"
    if _stored_bytes(images) + len(image_bytes) > quota_bytes:
        raise store_full(quota_bytes)
    name = sha256 + suffix
    fd, tmp = tempfile.mkstemp(dir=images, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(image_bytes)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, images / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(images)
    return f"{IMAGES_DIR}/{name}"


def _flags_today(conn: sqlite3.Connection, now: datetime) -> Callable[[str, str], int]:
    """How to count the corrections a reader or client (`column`) made on now's UTC day."""
    start, end = day_bounds(now)

    def count(column: str, value: str) -> int:
        return conn.execute(f"SELECT COUNT(*) FROM corrections WHERE {column} = ? AND created_at >= ? "
                            "AND created_at < ?", (value, start, end)).fetchone()[0]
    return count


def _check_limits(conn: sqlite3.Connection, record: dict, quotas: Quotas, now: datetime) -> None:
    """Raise StoreFull at the record quota, DailyLimitReached at the reader's or the client's daily limit."""
    (records,) = conn.execute("SELECT COUNT(*) FROM corrections").fetchone()
    check_limits(record, quotas, records, _flags_today(conn, now))

def _insert_once(
    conn: sqlite3.Connection, root: Path, record: dict, image: tuple[bytes, str], quotas: Quotas
) -> tuple[int, bool]:
    """In one write transaction: the id of the same earlier flag, else check quotas, store and insert; (id, created)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        latest = conn.execute(
            "SELECT id, correct_label, withdrawn_at FROM corrections WHERE image_sha256 = ? AND reader = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1", (record["image_sha256"], record["reader"]),
        ).fetchone()
        found = latest if repeats_latest(latest, record) else None
        if found is None:
            now = _utc_now()
            _check_limits(conn, record, quotas, now)
            image_bytes, suffix = image
            image_path = _store_image(root, image_bytes, record["image_sha256"], suffix, quotas.store_bytes)
            row = {**record, "image_path": image_path, "created_at": timestamp(now)}
            cursor = conn.execute(
                f"INSERT INTO corrections ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return (found[0], False) if found else (cursor.lastrowid, True)


def _note_predicted(conn: sqlite3.Connection, model_version: str, sha256: str, keep: int) -> None:
    """Note the image as predicted by the version, then forget all but the newest `keep` notes. Rowids count the
    notes up (a repeat adds none), so the oldest are the lowest and one range delete keeps the table bounded; a
    store made before the bound opens unchanged and is cut to it at its next note."""
    conn.execute("INSERT OR IGNORE INTO predicted_images VALUES (?, ?)", (model_version, sha256))
    conn.execute("DELETE FROM predicted_images WHERE rowid <= (SELECT MAX(rowid) FROM predicted_images) - ?",
                 (max(0, keep),))


class CorrectionStore:
    """The corrections in one folder: an SQLite database and one stored copy of each flagged image.

    Building it writes nothing and reading never writes (no lock file, no schema change), so a read-only store still
    serves reads; the first write creates the folder and the database. Failures leave as StoreUnwritable (writes)
    and StoreUnreadable (reads). `quotas` None takes them from the environment at each flag (Quotas.from_env).
    """

    def __init__(self, folder: str | Path, quotas: Quotas | None = None) -> None:
        self.folder = Path(folder)
        self.quotas = quotas

    def __repr__(self) -> str:
        return f"CorrectionStore({str(self.folder)!r})"

    @property
    def location(self) -> str:
        """Where the store is, for logs and notices: its folder."""
        return str(self.folder)

    @property
    def files(self) -> Path | None:
        """The local folder the store keeps its files in, which the app must never serve."""
        return self.folder

    def exists(self) -> bool:
        """Whether the store holds a database yet (nothing was ever written when not)."""
        return (self.folder / DB_NAME).is_file()

    def problem(self) -> str | None:
        """Why the store cannot take a correction now (read-only, full disk, not a folder), or None; writes nothing."""
        return _problem(self.folder)

    def add(
        self,
        image_bytes: bytes,
        filename: str,
        correct_label: str,
        reader: str,
        note: str,
        predicted_label: str,
        probability: float,
        model_version: str,
        *,
        verified: bool = False,
        image_sha256: str | None = None,
        extension: str | None = None,
        pixel_sha256: str = "",
        client: str | None = None,
    ) -> tuple[int, bool]:
        """Record a correction durably; return (record id, created).

        A reader's verdict that repeats their latest standing one of the image is not stored twice; any other is
        stored and becomes their latest (positive, negative, positive again ends at positive). `pixel_sha256` is the
        image's identity computed by the caller (model.images.pixel_sha256), recorded with it and written into
        exports. `client` (who sent it, e.g. an address) is kept only as a hash, for the per-client daily limit.
        """
        record, suffix = new_record(image_bytes, filename, correct_label, reader, note, predicted_label, probability,
                                    model_version, verified=verified, image_sha256=image_sha256,
                                    extension_given=extension, pixel_sha256=pixel_sha256, client=client)
        quotas = quotas_now(self.quotas)
        with _writing():
            conn = _connect(self.folder)
            try:
                return _insert_once(conn, self.folder, record, (bytes(image_bytes), suffix), quotas)
            finally:
                conn.close()

    def check_quotas(self, reader: str, client: str | None = None) -> None:
        """Raise what `add` would raise for any new image at the record or image quota or at the reader's or client's
        daily limit, before any work on the image (`add` checks again as it writes); reads only (a store not made yet
        counts as empty)."""
        quotas = quotas_now(self.quotas)
        record = {"reader": clean_reader(reader), "client": client_hash(client)}
        images = self.folder / IMAGES_DIR
        with _reading():
            if (_stored_bytes(images) if images.is_dir() else 0) >= quotas.store_bytes:
                raise store_full(quotas.store_bytes)
            conn = _connect_read(self.folder) if self.exists() else sqlite3.connect(":memory:")
            try:
                if "corrections" not in _tables(conn):
                    conn.close()
                    conn = sqlite3.connect(":memory:")
                    conn.execute(_SCHEMA)
                elif "client" not in {row[1] for row in conn.execute("PRAGMA table_info(corrections)")}:
                    record["client"] = ""
                _check_limits(conn, record, quotas, _utc_now())
            finally:
                conn.close()

    def for_image(self, image_sha256: str) -> list[Correction]:
        """All corrections of one image (by its file's SHA-256), oldest first."""
        sha256 = digest(image_sha256)
        with _reading():
            return _read(self.folder, "WHERE image_sha256 = ?", (sha256,))

    def all(self) -> list[Correction]:
        """Every correction in the store, oldest first; empty when the store does not exist yet."""
        with _reading():
            return _read(self.folder)

    def count(self) -> int:
        """How many corrections the store holds (withdrawn ones too)."""
        with _reading():
            rows = self._rows("SELECT COUNT(*) FROM corrections", "corrections")
        return rows[0][0] if rows else 0

    def withdraw(self, record_id: int, reader: str) -> Correction:
        """Withdraw a reader's own correction: it stays in the store's history but no longer counts or is exported.

        ValueError when there is no such record or it is another reader's; withdrawing twice changes nothing.
        """
        reader = clean_reader(reader)
        if not self.exists():
            raise ValueError(f"no feedback store at {self.folder}")
        with _writing():
            conn = _connect(self.folder)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT reader FROM corrections WHERE id = ?", (int(record_id),)).fetchone()
                    if row is None or row[0] != reader:
                        raise ValueError(f"record #{record_id} is not a correction of reader {reader!r}; "
                                         "a reader can withdraw only their own")
                    conn.execute("UPDATE corrections SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL",
                                 (timestamp(_utc_now()), int(record_id)))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()
        with _reading():
            return _read(self.folder, "WHERE id = ?", (int(record_id),))[0]

    def image_bytes(self, correction: Correction) -> bytes | None:
        """The stored copy of the correction's image (images/<image_name> in this store's folder), or None when that
        file has gone missing."""
        try:
            return (self.folder / IMAGES_DIR / correction.image_name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreUnreadable(f"the stored image of record #{correction.id} cannot be read: {error}") from error

    def count_prediction(self, model_version: str, image_sha256: str | None = None) -> None:
        """Add one to the number of predictions shown for this model version and note the image's SHA-256 as
        predicted by it (no image data is kept). At most `quotas.predicted_images` images are noted: the one first
        noted longest ago is forgotten first, so the table stays bounded while the counts go on."""
        if not isinstance(model_version, str) or not model_version:
            raise ValueError(f"model_version must be non-empty text, got {model_version!r}")
        sha256 = None if image_sha256 is None else digest(image_sha256)
        keep = MAX_PREDICTED_IMAGES if self.quotas is None else self.quotas.predicted_images
        with _writing():
            conn = _connect(self.folder)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO predictions (model_version, count) VALUES (?, 1) "
                             "ON CONFLICT (model_version) DO UPDATE SET count = count + 1", (model_version,))
                if sha256:
                    _note_predicted(conn, model_version, sha256, keep)
                conn.execute("COMMIT")
            finally:
                conn.close()

    def prediction_counts(self) -> dict[str, int]:
        """Model version -> number of predictions shown; empty when the store does not exist yet."""
        with _reading():
            rows = self._rows("SELECT model_version, count FROM predictions ORDER BY model_version", "predictions")
        return dict(rows)

    def predicted_images(self) -> dict[str, set[str]]:
        """Model version -> SHA-256 of each image it predicted; empty when the store does not exist yet."""
        found: dict[str, set[str]] = {}
        with _reading():
            rows = self._rows("SELECT model_version, image_sha256 FROM predicted_images", "predicted_images")
        for version, sha256 in rows:
            found.setdefault(version, set()).add(sha256)
        return found

    def integrity(self) -> str:
        """SQLite's own consistency check of the store: "ok" when healthy (or empty), else the problems found."""
        with _reading():
            rows = self._rows("PRAGMA integrity_check")
        return "\n".join(row[0] for row in rows) or "ok"

    def _rows(self, query: str, table: str | None = None) -> list[tuple]:
        """The query's rows on a read-only connection; none when the database (or the table it needs) is not there."""
        if not self.exists():
            return []
        conn = _connect_read(self.folder)
        try:
            return conn.execute(query).fetchall() if table is None or table in _tables(conn) else []
        finally:
            conn.close()
