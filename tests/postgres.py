"""A throwaway PostgreSQL server for the tests (the distribution's own, started once per session) and a fresh
database per test. Without the server installed the tests that need it fail in CI and skip elsewhere, saying how to
install it. Import the fixtures into a test module: `from tests.postgres import postgres_server, postgres_url`."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL = "install it with `apt-get install -y postgresql` (Debian's package, as .ci/run does)"
USER = "postgres"
_databases = itertools.count()


def _bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin), else None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_server_user(command: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: as root, run them as the `postgres` account."""
    return ["runuser", "-u", USER, "--", *command] if os.geteuid() == 0 else command


def _psycopg_missing() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -r requirements.txt)"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a superuser connection to a new server on a unix socket in a temporary folder (no TCP)."""
    bin_dir = _bin()
    why = _psycopg_missing() or (None if bin_dir else f"no PostgreSQL server here: {INSTALL}")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the PostgreSQL store tests need a server and psycopg, which CI installs: {why}")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="xray-postgres-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(USER)
        os.chown(root, account.pw_uid, account.pw_gid)
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
                                        "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
        # The tests kill clients (replicas), never the server: its own fsync would only slow them down.
        options = f"-k {root} -c listen_addresses='' -c fsync=off -c max_connections=200"
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                                        "-w", "start"]), check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or b"").decode(errors="replace") + (log.read_text() if log.exists() else "")
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"the throwaway PostgreSQL server did not start: {detail}")
    try:
        yield f"postgresql://{USER}@/postgres?host={root}"
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's server, as a postgresql:// URL."""
    import psycopg

    name = f"store_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.replace("/postgres?", f"/{name}?")
