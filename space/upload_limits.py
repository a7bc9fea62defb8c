"""Per-client limits on uploads at Gradio's upload route: uploads and bytes a minute, and bytes kept at once."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gradio.route_utils import API_PREFIX
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from space.handlers import client_key

MINUTE_S = 60.0
UPLOAD_ROUTE = f"{API_PREFIX}/upload"
TOO_MANY_REQUESTS = 429
LENGTH_REQUIRED = 411


@dataclass(frozen=True)
class UploadLimits:
    """One client's allowance (0: no limit): uploads and bytes a minute, and bytes of its uploads kept at once, an
    upload counting as kept for keep_s seconds (until the cache's clean-up deletes it)."""

    per_minute: int
    bytes_per_minute: int
    bytes_kept: int
    keep_s: float


def megabytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


@dataclass
class UploadLedger:
    """Each client's uploads (time, bytes) still kept, and the refusal of one over its allowance."""

    limits: UploadLimits
    clock: Callable[[], float] = time.monotonic
    _uploads: dict[str | None, deque[tuple[float, int]]] = field(default_factory=dict, repr=False)

    def _forget_older_than(self, start: float) -> None:
        for client in list(self._uploads):
            kept = self._uploads[client]
            while kept and kept[0][0] <= start:
                kept.popleft()
            if not kept:
                del self._uploads[client]

    def refusal(self, client: str | None, size: int) -> str | None:
        """Why this client may not upload `size` bytes now (a reason to read), else None and the upload counts."""
        now, limits = self.clock(), self.limits
        self._forget_older_than(now - limits.keep_s)
        kept = self._uploads.get(client, deque())
        recent = [n for t, n in kept if t > now - MINUTE_S]
        if limits.per_minute and len(recent) >= limits.per_minute:
            return f"too many uploads from you: at most {limits.per_minute} a minute; wait a minute and try again"
        if limits.bytes_per_minute and sum(recent) + size > limits.bytes_per_minute:
            return (f"too much uploaded from you: at most {megabytes(limits.bytes_per_minute)} a minute; wait a "
                    "minute and try again")
        if limits.bytes_kept and sum(n for _, n in kept) + size > limits.bytes_kept:
            return (f"too much of your uploads is kept: at most {megabytes(limits.bytes_kept)}, each kept for "
                    f"{limits.keep_s / 60:.0f} minutes after upload; try again later")
        self._uploads.setdefault(client, kept).append((now, size))
        return None


class UploadAllowance:
    """ASGI middleware: a POST to Gradio's upload route passes only within its client's allowance (the client as for
    sign-in lockouts: space.handlers.client_key), counted by the request's Content-Length before its body is read;
    else HTTP 429 with the reason as plain text, which the page shows after "HTTP 429:" and gradio_client raises.
    An upload that does not say its length is refused (411). Runs on the server's event loop, so no lock."""

    def __init__(self, app: ASGIApp, ledger: UploadLedger) -> None:
        self.app, self.ledger = app, ledger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith(UPLOAD_ROUTE):
            return await self.app(scope, receive, send)
        request = Request(scope)
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            refused = PlainTextResponse("an upload must say its length (Content-Length)", LENGTH_REQUIRED)
        elif reason := self.ledger.refusal(client_key(request), int(length)):
            refused = PlainTextResponse(reason, TOO_MANY_REQUESTS)
        else:
            return await self.app(scope, receive, send)
        await refused(scope, receive, send)
