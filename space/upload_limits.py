"""Per-client limits on uploads at Gradio's upload route: uploads and bytes a minute, and bytes kept at once."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gradio.route_utils import API_PREFIX
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from space.clients import client_key

MINUTE_S = 60.0
UPLOAD_ROUTE = f"{API_PREFIX}/upload"
TOO_MANY_REQUESTS = 429
LENGTH_REQUIRED = 411
TOO_LARGE = 413
MULTIPART_ENVELOPE = 64 * 1024
"""Bytes a multipart body may carry beyond its file (boundaries, headers, the form's other fields)."""


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
    """Each client's uploads (time, bytes, whether kept) of the last keep_s seconds, and the refusal of one over its
    allowance."""

    limits: UploadLimits
    clock: Callable[[], float] = time.monotonic
    _uploads: dict[str | None, deque[tuple[float, int, bool]]] = field(default_factory=dict, repr=False)

    def _forget_older_than(self, start: float) -> None:
        for client in list(self._uploads):
            uploads = self._uploads[client]
            while uploads and uploads[0][0] <= start:
                uploads.popleft()
            if not uploads:
                del self._uploads[client]

    def refusal(self, client: str | None, size: int, kept: bool = True) -> str | None:
        """Why this client may not upload `size` bytes now (a reason to read), else None and the upload counts: a
        minute towards the rates, and towards the bytes kept if it is `kept` (the REST API keeps nothing)."""
        now, limits = self.clock(), self.limits
        self._forget_older_than(now - limits.keep_s)
        uploads = self._uploads.get(client, deque())
        recent = [n for t, n, _ in uploads if t > now - MINUTE_S]
        if limits.per_minute and len(recent) >= limits.per_minute:
            return f"too many uploads from you: at most {limits.per_minute} a minute; wait a minute and try again"
        if limits.bytes_per_minute and sum(recent) + size > limits.bytes_per_minute:
            return (f"too much uploaded from you: at most {megabytes(limits.bytes_per_minute)} a minute; wait a "
                    "minute and try again")
        if kept and limits.bytes_kept and sum(n for _, n, held in uploads if held) + size > limits.bytes_kept:
            return (f"too much of your uploads is kept: at most {megabytes(limits.bytes_kept)}, each kept for "
                    f"{limits.keep_s / 60:.0f} minutes after upload; try again later")
        self._uploads.setdefault(client, uploads).append((now, size, kept))
        return None


class UploadAllowance:
    """ASGI middleware: a POST to Gradio's upload route, or to the REST API under `api_prefix`, passes only within its
    client's allowance (the client as for sign-in lockouts: space.clients.client_key), counted by the request's
    Content-Length before its body is read; else HTTP 429 with the reason, as plain text at Gradio's route (the page
    shows it after "HTTP 429:" and gradio_client raises it) and as JSON {"detail": reason} at the API's. An upload that
    does not say its length is refused (411), one longer than `max_bytes` (0: no cap) and a multipart envelope too
    (413). Runs on the server's event loop, so no lock."""

    def __init__(self, app: ASGIApp, ledger: UploadLedger, api_prefix: str | None = None, max_bytes: int = 0) -> None:
        self.app, self.ledger, self.api_prefix, self.max_bytes = app, ledger, api_prefix, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/")
        api = bool(self.api_prefix) and path.startswith(self.api_prefix)
        if scope["type"] != "http" or scope["method"] != "POST" or not (api or path.endswith(UPLOAD_ROUTE)):
            return await self.app(scope, receive, send)
        request = Request(scope)
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            status, reason = LENGTH_REQUIRED, "an upload must say its length (Content-Length)"
        elif self.max_bytes and int(length) > self.max_bytes + MULTIPART_ENVELOPE:
            status, reason = TOO_LARGE, f"File size exceeded maximum allowed size of {self.max_bytes} bytes."
        elif reason := self.ledger.refusal(client_key(request), int(length), kept=not api):
            status = TOO_MANY_REQUESTS
        else:
            return await self.app(scope, receive, send)
        refused = JSONResponse({"detail": reason}, status) if api else PlainTextResponse(reason, status)
        await refused(scope, receive, send)
