"""Corrections on a PostgreSQL server (PostgresStore), shared by every replica of the app that names the same server.

The stored copy of each flagged image is kept in the database itself (`images.data`, bytea), not in a folder: the
replicas of a Space, or the app beside a tuner on another machine, share nothing but the server, so a folder named
by a setting would be one more thing to share, back up and keep consistent with the rows; in the database an image
and its correction are written in one transaction and copied by one backup. A flagged image is a few hundred
kilobytes and the store's quota bounds their total, well within what bytea serves. Images are addressed by their
identity (the SHA-256 of the stored bytes), never by a path.

The schema is created once, by the first write to an empty database, under an advisory lock so two replicas starting
together create it once; its version is the row of `schema_version`, and a newer one is refused for writing. Every
flag takes one transaction-scoped advisory lock before it counts and writes, so the record quota, the image quota and
the daily limits per reader and per client hold across all replicas: two concurrent flags cannot both pass a limit
that only one fits under. A connection is opened per call (no pool): a flag or a count is rare next to a prediction,
and a replica killed mid-flag leaves only a rolled-back transaction behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

from feedback.records import (
    IMAGES_DIR,
    MAX_PREDICTED_IMAGES,
    VERDICTS,
    Correction,
    Quotas,
    StoreUnreadable,
    StoreUnwritable,
    check_limits,
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
"""The schema of this module's tables, the row of `schema_version` (1: diagnoses and verdicts on inputs, the same
records as the SQLite store's schema 1)."""
CONNECT_TIMEOUT_S = 10
SCHEMA_LOCK = 0x78726179_0001
"""Advisory lock key held while the schema is created (any 64-bit number no other user of the database takes)."""
FLAG_LOCK = 0x78726179_0002
"""Advisory lock key every flag holds from its quota checks to its commit."""

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE images (
        image_sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        data BYTEA NOT NULL
    )""",
    f"""CREATE TABLE corrections (
        id BIGSERIAL PRIMARY KEY,
        image_sha256 TEXT NOT NULL,
        image_name TEXT NOT NULL,
        original_filename TEXT NOT NULL,
        correct_label TEXT NOT NULL CHECK (correct_label IN ({", ".join(f"'{v}'" for v in VERDICTS)})),
        reader TEXT NOT NULL,
        note TEXT NOT NULL,
        predicted_label TEXT NOT NULL,
        probability DOUBLE PRECISION NOT NULL CHECK (probability BETWEEN 0 AND 1),
        model_version TEXT NOT NULL,
        created_at TEXT NOT NULL,
        verified BOOLEAN NOT NULL DEFAULT FALSE,
        pixel_sha256 TEXT NOT NULL DEFAULT '',
        withdrawn_at TEXT,
        client TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX corrections_by_image ON corrections (image_sha256)",
    "CREATE INDEX corrections_by_reader_time ON corrections (reader, created_at)",
    "CREATE INDEX corrections_by_client_time ON corrections (client, created_at)",
    """CREATE TABLE predictions (
        model_version TEXT PRIMARY KEY,
        count BIGINT NOT NULL DEFAULT 0 CHECK (count >= 0)
    )""",
    """CREATE TABLE predicted_images (
        seq BIGSERIAL PRIMARY KEY,
        model_version TEXT NOT NULL,
        image_sha256 TEXT NOT NULL,
        UNIQUE (model_version, image_sha256)
    )""",
)
_COPIED = ("id", "image_sha256", "original_filename", "correct_label", "reader", "note", "predicted_label", "probability",
           "model_version", "created_at", "pixel_sha256", "withdrawn_at", "client")
"""The columns a copy from an SQLite store takes as they are (image_path becomes image_name, verified a boolean)."""
_COLUMNS = ("id, image_sha256, image_name, original_filename, correct_label, reader, note, predicted_label, "
            "probability, model_version, created_at, verified, pixel_sha256, withdrawn_at")


def _reason(error: BaseException) -> str:
    """Why using the server failed, in words for the person flagging (never the connection's password)."""
    if isinstance(error, errors.DiskFull):
        return "the database server's disk is full"
    if isinstance(error, errors.ReadOnlySqlTransaction):
        return "the database is read-only (a standby server?)"
    if isinstance(error, (errors.InsufficientPrivilege, errors.InvalidPassword, errors.InvalidAuthorizationSpecification)):
        return "the app is not allowed to use the database"
    if isinstance(error, psycopg.OperationalError):
        return "the database server cannot be reached or refused the connection"
    return type(error).__name__ if isinstance(error, psycopg.Error) else (str(error) or type(error).__name__)


@contextmanager
def _failures_as(kind: type[OSError], done: str) -> Iterator[None]:
    """Turn the server's and the driver's failures into `kind`, saying what cannot be `done`, and why in words."""
    try:
        yield
    except (StoreUnwritable, StoreUnreadable):
        raise
    except (OSError, psycopg.Error) as error:
        raise kind(f"the corrections store cannot be {done}: {_reason(error)}") from None


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _version(conn: psycopg.Connection) -> int | None:
    """The schema version of the database, None when no store was ever made in it."""
    if not _table_exists(conn, "schema_version"):
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] if row and row[0] is not None else None


def create_schema(conn: psycopg.Connection) -> None:
    """Create the store's tables once (two replicas starting together create them once); refuse a database whose
    schema is newer than this code's."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        version = _version(conn)
        if version is None:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
        elif version > SCHEMA_VERSION:
            raise StoreUnwritable(f"the corrections store cannot be written: it was made by a newer version of this "
                                  f"app (store schema {version}; this one knows up to {SCHEMA_VERSION})")


def _flags_today(conn: psycopg.Connection, now: datetime) -> Callable[[str, str], int]:
    """How to count the corrections a reader or client (`column`) made on now's UTC day."""
    start, end = day_bounds(now)
    queries = {column: f"SELECT count(*) FROM corrections WHERE {column} = %s AND created_at >= %s AND created_at < %s"
               for column in ("reader", "client")}

    def count(column: str, value: str) -> int:
        return conn.execute(queries[column], (value, start, end)).fetchone()[0]
    return count


def _check_limits(conn: psycopg.Connection, record: dict, quotas: Quotas, now: datetime) -> None:
    """Raise StoreFull at the record quota, DailyLimitReached at the reader's or the client's daily limit."""
    (records,) = conn.execute("SELECT count(*) FROM corrections").fetchone()
    check_limits(record, quotas, records, _flags_today(conn, now))


def _stored_bytes(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(sum(octet_length(data)), 0) FROM images").fetchone()[0]


def _store_image(conn: psycopg.Connection, image_bytes: bytes, sha256: str, suffix: str, quota_bytes: int) -> str:
    """Keep the image once, by its SHA-256, named `<sha256><suffix>`; its name (one stored before keeps its first)."""
    if found := conn.execute("SELECT name FROM images WHERE image_sha256 = %s", (sha256,)).fetchone():
        return found[0]
    if _stored_bytes(conn) + len(image_bytes) > quota_bytes:
        raise store_full(quota_bytes)
    conn.execute("INSERT INTO images (image_sha256, name, data) VALUES (%s, %s, %s)",
                 (sha256, sha256 + suffix, image_bytes))
    return sha256 + suffix


def _correction(row: tuple) -> Correction:
    (id_, sha256, name, *middle, verified, pixel_sha256, withdrawn_at) = row
    return Correction(id_, sha256, f"{IMAGES_DIR}/{name}", *middle, verified=bool(verified),
                      pixel_sha256=pixel_sha256, withdrawn_at=withdrawn_at or "")


def note_predicted(conn: psycopg.Connection, model_version: str, sha256: str, keep: int) -> None:
    """Note the image as predicted by the version, then forget all but the newest `keep` notes (by sequence)."""
    conn.execute("INSERT INTO predicted_images (model_version, image_sha256) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (model_version, sha256))
    conn.execute("DELETE FROM predicted_images WHERE seq <= (SELECT max(seq) FROM predicted_images) - %s",
                 (max(0, keep),))


class PostgresStore:
    """The corrections in one PostgreSQL database (see the module's docstring for how replicas share it).

    Building it connects to nothing; reading never writes (a database without the store's tables reads as empty);
    the first write creates the schema. Failures leave as StoreUnwritable (writes) and StoreUnreadable (reads), in
    words without the connection's password. `quotas` None takes them from the environment at each flag.
    """

    def __init__(self, url: str, quotas: Quotas | None = None) -> None:
        self.url = url
        self.quotas = quotas
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    @property
    def location(self) -> str:
        """The server and database, as postgresql://user@host:port/dbname, without the password."""
        parts = conninfo_to_dict(self.url)
        user = f"{parts['user']}@" if parts.get("user") else ""
        port = f":{parts['port']}" if parts.get("port") else ""
        return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"

    @property
    def files(self) -> Path | None:
        """None: everything, the images too, is in the database."""
        return None

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)

    @contextmanager
    def _writer(self) -> Iterator[psycopg.Connection]:
        """A connection to a database holding the current schema (created by the first write), closed after."""
        with _failures_as(StoreUnwritable, "written"), self._connect() as conn:
            if not self._schema_ready:
                create_schema(conn)
                self._schema_ready = True
            yield conn

    def _rows(self, query: str, params: tuple = ()) -> list[tuple]:
        """The query's rows; none when the store's tables are not there yet. Reads only."""
        with _failures_as(StoreUnreadable, "read"), self._connect() as conn:
            if _version(conn) is None:
                return []
            return conn.execute(query, params).fetchall()

    def exists(self) -> bool:
        """Whether the database holds the store's tables (nothing was ever written when not)."""
        with _failures_as(StoreUnreadable, "read"), self._connect() as conn:
            return _version(conn) is not None

    def problem(self) -> str | None:
        """Why the store cannot take a correction now (server unreachable, read-only, not allowed), or None."""
        try:
            with self._connect() as conn:
                if conn.execute("SELECT current_setting('transaction_read_only') = 'on'").fetchone()[0]:
                    return _reason(errors.ReadOnlySqlTransaction())
                can = "has_database_privilege(current_database(), 'CREATE')" if _version(conn) is None else \
                    "has_table_privilege('corrections', 'INSERT')"
                if not conn.execute(f"SELECT {can}").fetchone()[0]:
                    return _reason(errors.InsufficientPrivilege())
        except psycopg.Error as error:
            return _reason(error)
        return None

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
        """Record a correction durably (the same rules as the SQLite store's `add`); return (record id, created)."""
        record, suffix = new_record(image_bytes, filename, correct_label, reader, note, predicted_label, probability,
                                    model_version, verified=verified, image_sha256=image_sha256,
                                    extension_given=extension, pixel_sha256=pixel_sha256, client=client)
        record["verified"] = bool(record["verified"])
        quotas = quotas_now(self.quotas)
        with self._writer() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FLAG_LOCK,))
            latest = conn.execute(
                "SELECT id, correct_label, withdrawn_at FROM corrections WHERE image_sha256 = %s AND reader = %s "
                "ORDER BY created_at DESC, id DESC LIMIT 1", (record["image_sha256"], record["reader"]),
            ).fetchone()
            if repeats_latest(latest, record):
                return latest[0], False
            now = _utc_now()
            _check_limits(conn, record, quotas, now)
            name = _store_image(conn, bytes(image_bytes), record["image_sha256"], suffix, quotas.store_bytes)
            row = {**record, "image_name": name, "created_at": timestamp(now)}
            (record_id,) = conn.execute(
                f"INSERT INTO corrections ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING id",
                tuple(row.values()),
            ).fetchone()
        return record_id, True

    def check_quotas(self, reader: str, client: str | None = None) -> None:
        """Raise what `add` would raise for any new image at a quota or a daily limit; reads only."""
        quotas = quotas_now(self.quotas)
        record = {"reader": clean_reader(reader), "client": client_hash(client)}
        with _failures_as(StoreUnreadable, "read"), self._connect() as conn:
            if _version(conn) is None:
                check_limits(record, quotas, 0, lambda column, value: 0)
                return
            if _stored_bytes(conn) >= quotas.store_bytes:
                raise store_full(quotas.store_bytes)
            _check_limits(conn, record, quotas, _utc_now())

    def _read(self, where: str = "", params: tuple = ()) -> list[Correction]:
        query = f"SELECT {_COLUMNS} FROM corrections {where} ORDER BY id"
        return [_correction(row) for row in self._rows(query, params)]

    def for_image(self, image_sha256: str) -> list[Correction]:
        """All corrections of one image (by its file's SHA-256), oldest first."""
        return self._read("WHERE image_sha256 = %s", (digest(image_sha256),))

    def all(self) -> list[Correction]:
        """Every correction in the store, oldest first; empty when the store does not exist yet."""
        return self._read()

    def count(self) -> int:
        """How many corrections the store holds (withdrawn ones too)."""
        rows = self._rows("SELECT count(*) FROM corrections")
        return rows[0][0] if rows else 0

    def withdraw(self, record_id: int, reader: str) -> Correction:
        """Withdraw a reader's own correction: kept in the history, no longer counted or exported. ValueError when
        there is no such record or it is another reader's; withdrawing twice changes nothing."""
        reader = clean_reader(reader)
        if not self.exists():
            raise ValueError(f"no feedback store at {self.location}")
        with self._writer() as conn, conn.transaction():
            row = conn.execute("SELECT reader FROM corrections WHERE id = %s FOR UPDATE", (int(record_id),)).fetchone()
            if row is None or row[0] != reader:
                raise ValueError(f"record #{record_id} is not a correction of reader {reader!r}; "
                                 "a reader can withdraw only their own")
            conn.execute("UPDATE corrections SET withdrawn_at = %s WHERE id = %s AND withdrawn_at IS NULL",
                         (timestamp(_utc_now()), int(record_id)))
        return self._read("WHERE id = %s", (int(record_id),))[0]

    def image_bytes(self, correction: Correction) -> bytes | None:
        """The stored copy of the correction's image, by its SHA-256; None when it is not in the database (a record
        copied from an SQLite store whose file had gone missing)."""
        rows = self._rows("SELECT data FROM images WHERE image_sha256 = %s", (digest(correction.image_sha256),))
        return bytes(rows[0][0]) if rows else None

    def count_prediction(self, model_version: str, image_sha256: str | None = None) -> None:
        """Add one to the predictions shown by this version and note the image's SHA-256 as predicted by it (at most
        `quotas.predicted_images` notes: the one first noted longest ago is forgotten first)."""
        if not isinstance(model_version, str) or not model_version:
            raise ValueError(f"model_version must be non-empty text, got {model_version!r}")
        sha256 = None if image_sha256 is None else digest(image_sha256)
        keep = MAX_PREDICTED_IMAGES if self.quotas is None else self.quotas.predicted_images
        with self._writer() as conn, conn.transaction():
            conn.execute("INSERT INTO predictions (model_version, count) VALUES (%s, 1) "
                         "ON CONFLICT (model_version) DO UPDATE SET count = predictions.count + 1", (model_version,))
            if sha256:
                note_predicted(conn, model_version, sha256, keep)

    def prediction_counts(self) -> dict[str, int]:
        """Model version -> number of predictions shown; empty when the store does not exist yet."""
        return dict(self._rows("SELECT model_version, count FROM predictions ORDER BY model_version"))

    def predicted_images(self) -> dict[str, set[str]]:
        """Model version -> SHA-256 of each image it predicted; empty when the store does not exist yet."""
        found: dict[str, set[str]] = {}
        for version, sha256 in self._rows("SELECT model_version, image_sha256 FROM predicted_images"):
            found.setdefault(version, set()).add(sha256)
        return found

    def load(self, tables: dict[str, list[dict]], images: dict[str, tuple[str, bytes]]) -> None:
        """Copy another store's rows in, ids kept, in one transaction (feedback.migrate): `tables` as
        feedback.store.read_tables gives them, `images` image SHA-256 -> (stored name, bytes). ValueError unless the
        store is empty, so a copy never mixes with corrections made here."""
        corrections = [{key: row[key] for key in _COPIED} | {"image_name": PurePosixPath(row["image_path"]).name,
                                                               "verified": bool(row["verified"])}
                       for row in tables["corrections"]]
        with self._writer() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FLAG_LOCK,))
            held = conn.execute("SELECT (SELECT count(*) FROM corrections) + (SELECT count(*) FROM images) + "
                                "(SELECT count(*) FROM predictions)").fetchone()[0]
            if held:
                raise ValueError(f"the store at {self.location} already holds corrections or counts; copy into an "
                                 "empty database")
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO images (image_sha256, name, data) VALUES (%s, %s, %s)",
                                   [(sha256, name, data) for sha256, (name, data) in images.items()])
                for table, rows in (("corrections", corrections), ("predictions", tables["predictions"]),
                                    ("predicted_images", tables["predicted_images"])):
                    if rows:
                        columns = list(rows[0])
                        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                           f"({', '.join(['%s'] * len(columns))})",
                                           [tuple(row[c] for c in columns) for row in rows])
            conn.execute("SELECT setval(pg_get_serial_sequence('corrections', 'id'), "
                         "(SELECT coalesce(max(id), 0) + 1 FROM corrections), false)")

    def integrity(self) -> str:
        """"ok" when the store is consistent (or empty), else the problems found: a schema this code does not know,
        a correction without its image (the server's own checks keep its pages consistent)."""
        problems = [f"store schema {version} is newer than this app's {SCHEMA_VERSION}"
                    for (version,) in self._rows("SELECT max(version) FROM schema_version") if version > SCHEMA_VERSION]
        problems += [f"record #{id_} has no stored image" for (id_,) in self._rows(
            "SELECT c.id FROM corrections c LEFT JOIN images i USING (image_sha256) WHERE i.image_sha256 IS NULL")]
        return "\n".join(problems) or "ok"
