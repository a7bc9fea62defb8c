"""Durable SQLite store of radiologists' corrections, with one stored copy of each flagged image (CorrectionStore)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import math
import os
import re
import sqlite3
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import settings

LABELS = ("positive", "negative", "uncertain")
"""A reader's verdict on what the image shows (the model's question)."""
SCOPE_LABELS = ("in_scope", "out_of_scope")
"""A reader's verdict on the input itself, for the input check (model.gate): an adult frontal chest film the model
should answer, or not one (refusing it is right). An input the model refused can only get one of these."""
VERDICTS = LABELS + SCOPE_LABELS
REFUSED_INPUT = "out_of_scope"
"""What a correction records as the model's answer when the input check refused the input."""
SCHEMA_VERSION = 1
"""The store's schema, kept in the database as PRAGMA user_version: 0 before versions (diagnoses only), 1 with the
input-check verdicts (SCOPE_LABELS)."""
MAX_NOTE_CHARS = 2000
MAX_READER_CHARS = 64
MAX_FILENAME_CHARS = 255
DB_NAME = "corrections.sqlite3"
LOCK_NAME = "corrections.lock"
IMAGES_DIR = "images"
BUSY_TIMEOUT_S = 60.0
MAX_PREDICTED_IMAGES = 100_000
"""Predicted images noted for the per-version share of corrected images: the most recently first noted are kept."""
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
_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
_READER = re.compile(r"[\w .-]+")
_NOTE_CONTROLS_ALLOWED = "\n\r\t"
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_SEPARATORS = frozenset("\u2028\u2029")


class QuotaExceeded(ValueError):
    """A flag refused because a storage limit is reached; nothing was stored."""


class StoreFull(QuotaExceeded):
    """Storing the image would take the store's images over its total quota."""


class DailyLimitReached(QuotaExceeded):
    """The reader (or the client) has already made the allowed number of flags this UTC day."""


class StoreUnwritable(OSError):
    """The store cannot be written (read-only file system, full disk, a path that is not a folder); nothing was stored."""


class StoreUnreadable(OSError):
    """The store cannot be read (a damaged database, a file that is not one, a folder that cannot be opened)."""


@dataclass(frozen=True)
class Quotas:
    """Limits on the store: total bytes of stored images, total records, flags per reader and per client per UTC
    day, and predicted images noted (the oldest are forgotten beyond it)."""

    store_bytes: int = settings.DEFAULT_QUOTA_MB * 2**20
    daily_flags: int = settings.DEFAULT_DAILY_FLAGS
    records: int = settings.DEFAULT_MAX_RECORDS
    daily_flags_per_client: int = settings.DEFAULT_DAILY_FLAGS
    predicted_images: int = MAX_PREDICTED_IMAGES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Quotas:
        """Quotas from XRAY_FEEDBACK_QUOTA_MB, XRAY_FEEDBACK_DAILY_FLAGS, XRAY_FEEDBACK_MAX_RECORDS and
        XRAY_FEEDBACK_DAILY_FLAGS_PER_CLIENT (settings), with the defaults where unset."""
        return cls(settings.store_quota_bytes(environ), settings.daily_flags(environ),
                   settings.store_max_records(environ), settings.daily_flags_per_client(environ))


@dataclass(frozen=True)
class Correction:
    """One radiologist's verdict on one image; `image_path` is absolute; `verified` when made by a signed-in reader.

    `pixel_sha256` is the image's identity (the hash of its decoded pixels, model.images.pixel_sha256) as the app
    recorded it at flag time ("" for records made before it was recorded); `withdrawn_at` is when the reader
    withdrew it ("" while it stands).
    """

    id: int
    image_sha256: str
    image_path: str
    original_filename: str
    correct_label: str
    reader: str
    note: str
    predicted_label: str
    probability: float
    model_version: str
    created_at: str
    verified: bool = False
    pixel_sha256: str = ""
    withdrawn_at: str = ""

    @property
    def about_input(self) -> bool:
        """Whether this is a verdict on the input for the input check (SCOPE_LABELS), not a diagnosis (LABELS)."""
        return self.correct_label in SCOPE_LABELS

    @property
    def identity(self) -> str:
        """What the correction is about: the decoded pixels' hash where recorded, else the stored file's bytes' hash."""
        return self.pixel_sha256 or self.image_sha256


def clean_reader(name: str) -> str:
    """The reader name stripped; ValueError unless it is 1-64 letters, digits, spaces, '.', '_' or '-'."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("reader name is empty: say who is making the correction")
    name = name.strip()
    if len(name) > MAX_READER_CHARS:
        raise ValueError(f"reader name is {len(name)} characters long; at most {MAX_READER_CHARS} are allowed")
    if not _READER.fullmatch(name):
        raise ValueError("reader name may contain only letters, digits, spaces, '.', '_' and '-'")
    return name


def check_note(note: str) -> str:
    """The note unchanged; ValueError unless it is text of at most 2,000 characters without control, text-direction
    or zero-width characters or Unicode line separators (newlines and tabs are fine)."""
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"note must be text of at most {MAX_NOTE_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in _NOTE_CONTROLS_ALLOWED for ch in note):
        raise ValueError("note may not contain control characters (newlines and tabs are fine)")
    if any(ch in _BIDI_CONTROLS for ch in note):
        raise ValueError("note may not contain text-direction control characters (such as U+202E), which would "
                         "reorder how it is displayed")
    if any(ch in _INVISIBLE for ch in note):
        raise ValueError("note may not contain invisible zero-width characters (U+200B-U+200D, U+2060, U+FEFF), "
                         "which hide text or make equal-looking notes differ")
    if any(ch in _SEPARATORS for ch in note):
        raise ValueError("note may not contain Unicode line or paragraph separators (U+2028, U+2029); use an "
                         "ordinary new line")
    return note


def _clean_filename(filename: str) -> str:
    """The upload's base name without control characters, cut to 255 characters, for the record."""
    if not isinstance(filename, str):
        raise ValueError(f"filename must be text, got {type(filename).__name__}")
    name = "".join(ch for ch in Path(filename).name if unicodedata.category(ch) != "Cc")
    return name[:MAX_FILENAME_CHARS]


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
    before accounts count as unverified); refuse one made by a newer version."""
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


def _suffix(filename: str) -> str:
    """The file name's extension in lower case, or "" when it has none or an odd one."""
    suffix = Path(filename).suffix.lower()
    return suffix if _EXTENSION.fullmatch(suffix) else ""


def _extension(extension: str) -> str:
    """An extension given by the caller, as ".png"; ValueError unless 1-8 letters or digits."""
    suffix = "." + extension.lower().removeprefix(".") if isinstance(extension, str) else ""
    if not _EXTENSION.fullmatch(suffix):
        raise ValueError(f"extension must be 1-8 letters or digits such as '.png', got {extension!r}")
    return suffix


def _digest(image_sha256: str) -> str:
    """The hex SHA-256 digest in lower case; ValueError when it is not one."""
    sha256 = image_sha256.strip().lower() if isinstance(image_sha256, str) else ""
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a hex SHA-256 digest: {image_sha256!r}")
    return sha256


def _stored_bytes(images: Path) -> int:
    """Bytes taken by the files in the images folder."""
    with os.scandir(images) as entries:
        return sum(entry.stat().st_size for entry in entries if entry.is_file(follow_symlinks=False))


def _store_full(quota_bytes: int) -> StoreFull:
    return StoreFull(f"the feedback store is full (its quota is {quota_bytes / 2**20:.0f} MB of images); "
                     "ask the Space's maintainer to export and clear it or to raise XRAY_FEEDBACK_QUOTA_MB")


def _store_image(root: Path, image_bytes: bytes, sha256: str, suffix: str, quota_bytes: int) -> str:
    """Write the image once under images/ as <sha256><suffix>, atomically and durably; return its path under root."""
    images = root / IMAGES_DIR
    images.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = sorted(images.glob(f"{sha256}*"))
    if existing:
        return f"{IMAGES_DIR}/{existing[0].name}"
    if _stored_bytes(images) + len(image_bytes) > quota_bytes:
        raise _store_full(quota_bytes)
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


def _validate(image_bytes, correct_label, predicted_label, probability, model_version) -> None:
    if not isinstance(image_bytes, (bytes, bytearray)) or not image_bytes:
        raise ValueError("image is empty: nothing to store")
    if correct_label not in VERDICTS:
        raise ValueError(f"correct_label must be one of {VERDICTS}, got {correct_label!r}")
    if not isinstance(predicted_label, str) or not isinstance(model_version, str):
        raise ValueError("predicted_label and model_version must be text")
    if predicted_label == REFUSED_INPUT and correct_label not in SCOPE_LABELS:
        raise ValueError("the input check refused this image, so it gets no COVID-19 label: say whether it is an "
                         "adult frontal chest film (in_scope) or not, so refusing it was right (out_of_scope)")
    if not isinstance(probability, (int, float)) or math.isnan(probability) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be a number in [0, 1], got {probability!r}")


def client_hash(client: str | None) -> str:
    """What the store keeps of a client: the first 16 hex digits of its SHA-256 ('' when unknown)."""
    return hashlib.sha256(client.encode()).hexdigest()[:16] if client else ""


def _utc_now() -> datetime:
    """The time now in UTC (a seam for tests)."""
    return datetime.now(timezone.utc)


def _flags_today(conn: sqlite3.Connection, column: str, value: str, now: datetime) -> int:
    """How many corrections have this reader or client (`column`) on now's UTC day."""
    day = now.date()
    (count,) = conn.execute(
        f"SELECT COUNT(*) FROM corrections WHERE {column} = ? AND created_at >= ? AND created_at < ?",
        (value, day.isoformat(), (day + timedelta(days=1)).isoformat()),
    ).fetchone()
    return count


def _check_limits(conn: sqlite3.Connection, record: dict, quotas: Quotas, now: datetime) -> None:
    """Raise StoreFull at the record quota, DailyLimitReached at the reader's or the client's daily limit."""
    (records,) = conn.execute("SELECT COUNT(*) FROM corrections").fetchone()
    if records >= quotas.records:
        raise StoreFull(f"the feedback store holds {records} corrections, its limit (XRAY_FEEDBACK_MAX_RECORDS); "
                        "ask the Space's maintainer to export and clear it")
    reader, limit = record["reader"], quotas.daily_flags
    if (count := _flags_today(conn, "reader", reader, now)) >= limit:
        raise DailyLimitReached(f"reader {reader!r} has made {count} flags today, the daily limit is {limit}; "
                                "flag again after 00:00 UTC")
    limit = quotas.daily_flags_per_client
    if record["client"] and (count := _flags_today(conn, "client", record["client"], now)) >= limit:
        raise DailyLimitReached(f"{count} flags came from your address today, the daily limit per client is {limit}; "
                                "flag again after 00:00 UTC")


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
        found = latest if latest and latest[1] == record["correct_label"] and latest[2] is None else None
        if found is None:
            now = _utc_now()
            _check_limits(conn, record, quotas, now)
            image_bytes, suffix = image
            image_path = _store_image(root, image_bytes, record["image_sha256"], suffix, quotas.store_bytes)
            row = {**record, "image_path": image_path, "created_at": now.isoformat(timespec="microseconds")}
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


def open_store(folder: str | Path) -> CorrectionStore:
    """The store the app and `python -m feedback` use for this folder: the one place that picks the store's kind."""
    return CorrectionStore(folder)


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
        _validate(image_bytes, correct_label, predicted_label, probability, model_version)
        if not isinstance(verified, bool):
            raise ValueError(f"verified must be True or False, got {verified!r}")
        suffix = _suffix(filename) if extension is None else _extension(extension)
        quotas = Quotas.from_env() if self.quotas is None else self.quotas
        sha256 = hashlib.sha256(image_bytes).hexdigest() if image_sha256 is None else _digest(image_sha256)
        record = {
            "image_sha256": sha256, "original_filename": _clean_filename(filename),
            "correct_label": correct_label, "reader": clean_reader(reader), "note": check_note(note),
            "predicted_label": predicted_label, "probability": float(probability), "model_version": model_version,
            "verified": int(verified), "pixel_sha256": _digest(pixel_sha256) if pixel_sha256 else "",
            "client": client_hash(client),
        }
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
        quotas = Quotas.from_env() if self.quotas is None else self.quotas
        record = {"reader": clean_reader(reader), "client": client_hash(client)}
        images = self.folder / IMAGES_DIR
        with _reading():
            if (_stored_bytes(images) if images.is_dir() else 0) >= quotas.store_bytes:
                raise _store_full(quotas.store_bytes)
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
        sha256 = _digest(image_sha256)
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
                                 (_utc_now().isoformat(timespec="microseconds"), int(record_id)))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()
        with _reading():
            return _read(self.folder, "WHERE id = ?", (int(record_id),))[0]

    def image_bytes(self, correction: Correction) -> bytes | None:
        """The stored copy of the correction's image, or None when that file has gone missing."""
        try:
            return Path(correction.image_path).read_bytes()
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
        sha256 = None if image_sha256 is None else _digest(image_sha256)
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
