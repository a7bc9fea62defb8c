"""Reader (radiologist) accounts from the environment, with plain or PBKDF2-hashed passwords."""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import settings
from feedback.records import clean_reader

PBKDF2_PREFIX = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 200_000
_DUMMY_SALT = bytes(16)


def check_password(password: str) -> str:
    """The password unchanged; ValueError when it holds a control character (NUL, escape, a line break): no reader
    types one, and a password that differs from the right one only by a hidden character must not sign in."""
    if any(unicodedata.category(ch) == "Cc" for ch in password):
        raise ValueError("a password may not contain control characters (such as NUL)")
    return password


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """PBKDF2-SHA256 hash as "pbkdf2_sha256$iterations$salt_hex$hash_hex", for XRAY_READERS_FILE."""
    if not password:
        raise ValueError("password is empty")
    check_password(password)
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{PBKDF2_PREFIX}${iterations}${salt.hex()}${digest.hex()}"


def _parse_pbkdf2(secret: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a stored hash; ValueError when it is malformed."""
    parts = secret.split("$")
    if len(parts) != 4 or parts[0] != PBKDF2_PREFIX:
        raise ValueError(f"expected {PBKDF2_PREFIX}$iterations$salt_hex$hash_hex")
    iterations, salt, digest = int(parts[1]), bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
    if iterations < 1 or not salt or not digest:
        raise ValueError("iterations must be positive and salt and hash non-empty")
    return iterations, salt, digest


def _parse_entries(entries: list[str], where: str) -> dict[str, str]:
    """Parse "name:secret" entries; blank entries and '#' comments are skipped."""
    readers: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, secret = entry.partition(":")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or not secret:
            raise ValueError(f"{where} {number}: expected 'name:password', got {entry!r}")
        try:
            clean_reader(name)
        except ValueError as e:
            raise ValueError(f"{where} {number}: {e}") from None
        if name in readers:
            raise ValueError(f"{where} {number}: reader {name!r} is listed twice")
        try:
            if secret.startswith(PBKDF2_PREFIX + "$"):
                _parse_pbkdf2(secret)
            else:
                check_password(secret)
        except ValueError as e:
            raise ValueError(f"{where} {number}: bad password or hash for {name!r}: {e}") from None
        readers[name] = secret
    return readers


def load_readers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Reader name -> stored secret from XRAY_READERS or XRAY_READERS_FILE (settings); {} when neither is set."""
    inline, path = settings.reader_accounts(environ)
    if inline and path:
        raise ValueError("set only one of XRAY_READERS and XRAY_READERS_FILE")
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"cannot read XRAY_READERS_FILE {path!r}: {e.strerror}") from None
        return _parse_entries(lines, f"{path} line")
    return _parse_entries(inline.split(","), "XRAY_READERS entry")


def _dummy_iterations(readers: Mapping[str, str]) -> int:
    """The most PBKDF2 iterations among the stored hashes, else the default: the cost of a real check."""
    hashed = [_parse_pbkdf2(secret)[0] for secret in readers.values() if secret.startswith(PBKDF2_PREFIX + "$")]
    return max(hashed, default=DEFAULT_ITERATIONS)


def check_reader(readers: Mapping[str, str], name: str, password: str) -> bool:
    """True when the password is right for the reader; with no accounts configured, any valid reader name passes."""
    if not readers:
        try:
            return bool(clean_reader(name))
        except ValueError:
            return False
    secret = readers.get(name.strip())
    if secret is not None and secret.startswith(PBKDF2_PREFIX + "$"):
        iterations, salt, digest = _parse_pbkdf2(secret)
        return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations), digest)
    # Unknown readers and plain-text accounts cost one PBKDF2 too, so timing does not tell which names exist.
    hashlib.pbkdf2_hmac("sha256", password.encode(), _DUMMY_SALT, _dummy_iterations(readers))
    return secret is not None and hmac.compare_digest(secret.encode(), password.encode())
