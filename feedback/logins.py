"""Signing in to flag: the password check, refused for a while after repeated failures per reader and per client."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from feedback.readers import check_password, check_reader
from feedback.records import clean_reader

log = logging.getLogger(__name__)

MAX_TRACKED_KEYS = 10_000


class LoginFailed(ValueError):
    """A sign-in was refused; the message is meant for the person signing in."""


class TooManyAttempts(LoginFailed):
    """Sign-in refused without checking the password, because of too many recent failures."""

    def __init__(self, who: str, retry_after_s: float):
        self.retry_after_s = retry_after_s
        minutes = max(1, math.ceil(retry_after_s / 60))
        super().__init__(f"Too many attempts for {who}: try again in {minutes} minute{'s' if minutes > 1 else ''}.")


@dataclass(frozen=True)
class Login:
    """A reader allowed to flag: `verified` when they proved who they are with a password."""

    reader: str
    verified: bool


@dataclass
class LoginGuard:
    """Failed sign-ins within `window_s`, counted per reader name, per client and per (reader, client).

    `per_client` failures from one client lock that client out of every name for `lockout_s`. `per_reader` failures
    for one name, from anywhere, lock that name for `lockout_s`, but only against clients that failed for it within
    the window (or are unknown): the reader, from a client with no failures for that name, still signs in with the
    right password, so an outsider cannot lock a reader out.

    The counts live in this process's memory, so each replica of the app keeps its own (with N replicas on one
    PostgreSQL store, up to N times the attempts before all lock): they must answer before any other work and hold
    no lasting record, so they stay out of the store (README: "Corrections store: SQLite or PostgreSQL").
    """

    per_reader: int = 5
    per_client: int = 20
    window_s: float = 15 * 60
    lockout_s: float = 15 * 60
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _locked_until: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _keys(self, reader: str | None, client: str | None) -> list[tuple[str, int, str]]:
        """(key, failure limit, words for messages) for the reader name and the client that apply."""
        keys = [(f"reader:{reader}", self.per_reader, f"reader {reader!r}")] if reader else []
        return keys + ([(f"client:{client}", self.per_client, "this client")] if client else [])

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._failures.get(key, []) if now - t < self.window_s]

    def _applies(self, key: str, reader: str | None, client: str | None, now: float) -> bool:
        """Whether a lock on `key` refuses this attempt: a reader's lock spares a client with no failures for it."""
        if not key.startswith("reader:") or client is None:
            return True
        return bool(self._recent(f"pair:{reader}|{client}", now))

    def check(self, reader: str | None, client: str | None) -> None:
        """Raise TooManyAttempts while the client, or the reader name against this client, is locked out."""
        with self._lock:
            now = self.clock()
            for key, _, who in self._keys(reader, client):
                until = self._locked_until.get(key)
                if until is not None and now >= until:
                    del self._locked_until[key]
                elif until is not None and self._applies(key, reader, client, now):
                    raise TooManyAttempts(who, until - now)

    def failed(self, reader: str | None, client: str | None) -> None:
        """Count a failed sign-in; the one that reaches a limit starts that name's or client's lockout."""
        with self._lock:
            now = self.clock()
            if reader and client:
                key = f"pair:{reader}|{client}"
                self._failures[key] = self._recent(key, now) + [now]
            for key, limit, _ in self._keys(reader, client):
                recent = self._recent(key, now) + [now]
                if len(recent) >= limit:
                    self._locked_until[key] = max(self._locked_until.get(key, now), now + self.lockout_s)
                    self._failures.pop(key, None)
                else:
                    self._failures[key] = recent
            if len(self._failures) + len(self._locked_until) > MAX_TRACKED_KEYS:
                self._forget_expired(now)

    def succeeded(self, reader: str, client: str | None = None) -> None:
        """Forget the reader's earlier failures and this client's for the reader (the client's own still count)."""
        with self._lock:
            self._failures.pop(f"reader:{reader}", None)
            self._failures.pop(f"pair:{reader}|{client}", None)

    def _forget_expired(self, now: float) -> None:
        """Drop failures older than the window and lockouts that have ended, so memory stays bounded."""
        self._failures = {k: ts for k, ts in self._failures.items() if now - ts[-1] < self.window_s}
        self._locked_until = {k: until for k, until in self._locked_until.items() if now < until}


def check_login(
    readers: Mapping[str, str], guard: LoginGuard, name: str | None, password: str | None, client: str | None = None
) -> Login:
    """Who is flagging: verified with accounts configured, unverified in open mode; raises LoginFailed otherwise."""
    if not readers:
        try:
            return Login(clean_reader(name or ""), verified=False)
        except ValueError as e:
            raise LoginFailed(str(e)) from None
    try:
        reader = clean_reader(name or "")
    except ValueError:
        reader = None
    try:
        guard.check(reader, client)
    except TooManyAttempts:
        log.warning("sign-in refused (locked out) for reader %r from client %r", (name or "")[:80], client)
        raise
    typed = password or ""
    try:
        check_password(typed)
    except ValueError as error:
        refused = str(error)
    else:
        if reader is not None and check_reader(readers, reader, typed):
            guard.succeeded(reader, client)
            return Login(reader, verified=True)
        refused = "Unknown reader or wrong password."
    guard.failed(reader, client)
    log.warning("failed sign-in for reader %r from client %r", (name or "")[:80], client)
    raise LoginFailed(refused)
