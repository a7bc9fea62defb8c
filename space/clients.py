"""Who is asking: the client a request comes from, as the trusted proxy saw it, for every door of the server."""

from __future__ import annotations

from typing import Any

import settings


def forwarded_entries(request: Any) -> list[str]:
    """Every X-Forwarded-For entry, left to right, across all the header's lines (a client can add lines too)."""
    headers = request.headers
    lines = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else [headers.get("x-forwarded-for", "")]
    return [e.strip() for line in lines for e in (line or "").split(",") if e.strip()]


def client_key(request: Any | None, proxies: int | None = None) -> str | None:
    """Who is asking, for sign-in lockouts, quotas and fair shares: the X-Forwarded-For entry the nearest trusted
    proxy wrote (counted from the right, where a client cannot forge it), else the peer's address (app.launch turns
    off uvicorn's own rewriting of the peer from the header). `request` is a Starlette or Gradio request (headers and
    client)."""
    if request is None:
        return None
    proxies = settings.trusted_proxies() if proxies is None else proxies
    entries = forwarded_entries(request)
    if proxies and len(entries) >= proxies:
        return entries[-proxies][:100]
    return getattr(request.client, "host", None)
