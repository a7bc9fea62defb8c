"""open_store: the corrections store a setting names (a folder, `sqlite:///...`, `postgresql://...`), the one place
that picks the store's kind."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from feedback.records import Quotas, Store
from feedback.store import CorrectionStore

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_SCHEME = "sqlite"


def is_url(name: str | Path) -> bool:
    """Whether the store's name is a URL (`sqlite:///...`, `postgresql://...`) rather than a folder."""
    return isinstance(name, str) and urlsplit(name).scheme in (*POSTGRES_SCHEMES, SQLITE_SCHEME)


def open_store(url: str | Path, quotas: Quotas | None = None) -> Store:
    """The store the URL names: a folder path or `sqlite:///FOLDER` (SQLAlchemy's spelling: `sqlite:///data/x` is
    relative, `sqlite:////srv/x` absolute) opens the SQLite store in that folder exactly as before; `postgresql://user:password@host:port/db` (or any
    libpq connection URL) the PostgreSQL one. Builds it without connecting or writing."""
    if not is_url(url):
        return CorrectionStore(url, quotas)
    parts = urlsplit(str(url))
    if parts.scheme == SQLITE_SCHEME:
        if parts.netloc:
            raise ValueError(f"an SQLite store URL names a folder on this machine, sqlite:///FOLDER, not a host: {url}")
        return CorrectionStore(unquote(parts.path)[1:], quotas)
    from feedback.postgres_store import PostgresStore  # psycopg only where PostgreSQL is used

    return PostgresStore(str(url), quotas)
