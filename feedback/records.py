"""What a correction is, its rules, quotas and errors, and the Store protocol every store implements (no database)."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import settings
from handoff import DIAGNOSES, INPUT_VERDICTS, identity

LABELS = DIAGNOSES
"""A reader's verdict on what the image shows (handoff.DIAGNOSES)."""
SCOPE_LABELS = INPUT_VERDICTS
"""A reader's verdict on the input itself (handoff.INPUT_VERDICTS). An input the model refused can only get one."""
VERDICTS = LABELS + SCOPE_LABELS
REFUSED_INPUT = "out_of_scope"
"""What a correction records as the model's answer when the input check refused the input."""
MAX_NOTE_CHARS = 2000
MAX_READER_CHARS = 64
MAX_FILENAME_CHARS = 255
MAX_PREDICTED_IMAGES = 100_000
"""Predicted images noted for the per-version share of corrected images: the most recently first noted are kept."""
IMAGES_DIR = "images"
"""The stored copies' folder, as the first part of a correction's image_path in every store."""

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
    """The store cannot be written (read-only file system, full disk, a path that is not a folder, a database server
    that refuses or cannot be reached); nothing was stored."""


class StoreUnreadable(OSError):
    """The store cannot be read (a damaged database, a file that is not one, a folder that cannot be opened, a
    database server that cannot be reached)."""


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
    """One radiologist's verdict on one image; `verified` when made by a signed-in reader.

    `image_path` says where the store keeps its copy of the image: the file's absolute path in an SQLite store,
    `images/<name>` inside the database in a PostgreSQL one; read the copy with the store's `image_bytes`, which
    finds it by the image's identity, never by opening this path. `pixel_sha256` is the image's identity (the hash of
    its decoded pixels, model.images.pixel_sha256) as the app recorded it at flag time ("" for records made before it
    was recorded); `withdrawn_at` is when the reader withdrew it ("" while it stands).
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
        return identity(self.pixel_sha256, self.image_sha256)

    @property
    def image_name(self) -> str:
        """The stored copy's name, `<image_sha256><extension>`, the same in every store (exports name files by it)."""
        return PurePosixPath(self.image_path).name


@runtime_checkable
class Store(Protocol):
    """What the app, the export, the review and `python -m feedback` ask of a corrections store (SQLite in a folder:
    feedback.store.CorrectionStore; a PostgreSQL server: feedback.postgres_store.PostgresStore)."""

    quotas: Quotas | None

    @property
    def location(self) -> str:
        """Where the store is, for logs and notices (a folder, or a server without its password)."""

    @property
    def files(self) -> Path | None:
        """The local folder the store keeps files in, which must never be served; None when it keeps none."""

    def exists(self) -> bool:
        """Whether anything was ever written to the store."""

    def problem(self) -> str | None:
        """Why the store cannot take a correction now, in words, or None; writes nothing."""

    def add(self, image_bytes: bytes, filename: str, correct_label: str, reader: str, note: str,
            predicted_label: str, probability: float, model_version: str, *, verified: bool = False,
            image_sha256: str | None = None, extension: str | None = None, pixel_sha256: str = "",
            client: str | None = None) -> tuple[int, bool]:
        """Record a correction durably within the quotas; (record id, created)."""

    def check_quotas(self, reader: str, client: str | None = None) -> None:
        """Raise what `add` would raise at a quota for any new image; reads only."""

    def for_image(self, image_sha256: str) -> list[Correction]:
        """All corrections of one image (by its file's SHA-256), oldest first."""

    def all(self) -> list[Correction]:
        """Every correction, oldest first."""

    def count(self) -> int:
        """How many corrections the store holds (withdrawn ones too)."""

    def withdraw(self, record_id: int, reader: str) -> Correction:
        """Withdraw a reader's own correction (kept in the history, no longer counted or exported)."""

    def image_bytes(self, correction: Correction) -> bytes | None:
        """The stored copy of the correction's image, or None when it has gone missing."""

    def count_prediction(self, model_version: str, image_sha256: str | None = None) -> None:
        """Count one prediction shown by the version and note the image as predicted by it."""

    def prediction_counts(self) -> dict[str, int]:
        """Model version -> number of predictions shown."""

    def predicted_images(self) -> dict[str, set[str]]:
        """Model version -> SHA-256 of each image it predicted."""

    def integrity(self) -> str:
        """"ok" when the store is consistent (or empty), else the problems found."""


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


def clean_filename(filename: str) -> str:
    """The upload's base name without control characters, cut to 255 characters, for the record."""
    if not isinstance(filename, str):
        raise ValueError(f"filename must be text, got {type(filename).__name__}")
    name = "".join(ch for ch in Path(filename).name if unicodedata.category(ch) != "Cc")
    return name[:MAX_FILENAME_CHARS]


def suffix(filename: str) -> str:
    """The file name's extension in lower case, or "" when it has none or an odd one."""
    found = Path(filename).suffix.lower()
    return found if _EXTENSION.fullmatch(found) else ""


def extension(given: str) -> str:
    """An extension given by the caller, as ".png"; ValueError unless 1-8 letters or digits."""
    found = "." + given.lower().removeprefix(".") if isinstance(given, str) else ""
    if not _EXTENSION.fullmatch(found):
        raise ValueError(f"extension must be 1-8 letters or digits such as '.png', got {given!r}")
    return found


def digest(image_sha256: str) -> str:
    """The hex SHA-256 digest in lower case; ValueError when it is not one."""
    sha256 = image_sha256.strip().lower() if isinstance(image_sha256, str) else ""
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a hex SHA-256 digest: {image_sha256!r}")
    return sha256


def validate(image_bytes, correct_label, predicted_label, probability, model_version) -> None:
    """ValueError unless the image is non-empty and the verdict, the model's answer and its probability are valid."""
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


def new_record(image_bytes: bytes, filename: str, correct_label: str, reader: str, note: str, predicted_label: str,
               probability: float, model_version: str, *, verified: bool, image_sha256: str | None,
               extension_given: str | None, pixel_sha256: str, client: str | None) -> tuple[dict, str]:
    """`Store.add`'s arguments checked and cleaned into the row every store inserts (without id, image place and
    time), and the stored copy's extension; ValueError for anything invalid."""
    validate(image_bytes, correct_label, predicted_label, probability, model_version)
    if not isinstance(verified, bool):
        raise ValueError(f"verified must be True or False, got {verified!r}")
    chosen = suffix(filename) if extension_given is None else extension(extension_given)
    sha256 = hashlib.sha256(image_bytes).hexdigest() if image_sha256 is None else digest(image_sha256)
    record = {
        "image_sha256": sha256, "original_filename": clean_filename(filename),
        "correct_label": correct_label, "reader": clean_reader(reader), "note": check_note(note),
        "predicted_label": predicted_label, "probability": float(probability), "model_version": model_version,
        "verified": int(verified), "pixel_sha256": digest(pixel_sha256) if pixel_sha256 else "",
        "client": client_hash(client),
    }
    return record, chosen


def repeats_latest(latest: tuple | None, record: Mapping) -> bool:
    """Whether a reader's latest correction of the image, (id, correct_label, withdrawn_at) or None, is the same
    standing verdict as the new record: then the flag is not stored twice."""
    return latest is not None and latest[1] == record["correct_label"] and not latest[2]


def utc_now() -> datetime:
    """The time now in UTC (each store module holds it as `_utc_now`, a seam for tests)."""
    return datetime.now(timezone.utc)


def timestamp(moment: datetime) -> str:
    """How every store writes a time: ISO 8601 in UTC to the microsecond (text sorts as time)."""
    return moment.isoformat(timespec="microseconds")


def day_bounds(now: datetime) -> tuple[str, str]:
    """The start of now's UTC day and of the next, as text comparable with `timestamp`'s."""
    day = now.date()
    return day.isoformat(), (day + timedelta(days=1)).isoformat()


def store_full(quota_bytes: int) -> StoreFull:
    """The refusal when storing an image would take the images over the quota."""
    return StoreFull(f"the feedback store is full (its quota is {quota_bytes / 2**20:.0f} MB of images); "
                     "ask the Space's maintainer to export and clear it or to raise XRAY_FEEDBACK_QUOTA_MB")


def check_limits(record: Mapping[str, str], quotas: Quotas, records: int,
                 flags_today: Callable[[str, str], int]) -> None:
    """Raise StoreFull at the record quota, DailyLimitReached at the reader's or the client's daily limit, given the
    store's record count and how it counts today's flags of a reader or client (`flags_today(column, value)`)."""
    if records >= quotas.records:
        raise StoreFull(f"the feedback store holds {records} corrections, its limit (XRAY_FEEDBACK_MAX_RECORDS); "
                        "ask the Space's maintainer to export and clear it")
    reader, limit = record["reader"], quotas.daily_flags
    if (count := flags_today("reader", reader)) >= limit:
        raise DailyLimitReached(f"reader {reader!r} has made {count} flags today, the daily limit is {limit}; "
                                "flag again after 00:00 UTC")
    limit = quotas.daily_flags_per_client
    if record["client"] and (count := flags_today("client", record["client"])) >= limit:
        raise DailyLimitReached(f"{count} flags came from your address today, the daily limit per client is {limit}; "
                                "flag again after 00:00 UTC")


def quotas_now(quotas: Quotas | None) -> Quotas:
    """The store's quotas, or the environment's at this moment when it has none of its own."""
    return Quotas.from_env() if quotas is None else quotas
