"""Admission at the queue's door: a client with too many requests waiting or running has its next ones refused (HTTP
429) before they take a place in Gradio's queue, which every client shares."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Container, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import gradio as gr
from fastapi import HTTPException
from gradio.route_utils import API_PREFIX
from gradio.server_messages import ProcessCompletedMessage
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from space.clients import client_key

REFUSED = "too many requests from you; wait for your earlier ones"
TOO_MANY_REQUESTS = 429
QUEUE_ROUTES = (f"{API_PREFIX}/queue/join", f"{API_PREFIX}/call/")
"""Where a request asks for a place in the queue: the page's join, and gradio_client's and curl's /call/<api>."""


@dataclass
class Admission:
    """Each client's events in the queue. A client may enter while fewer than `limit` (0: no limit) of its events are
    still waiting or running plus being let in now (or, at a door without a queue, running: `admitted`). An event
    stops counting when it is `finished`, or once it is no longer among the ids the queue holds (`live`: those that
    never answered, such as a closed page's; the queue's, once admit_per_client guards it)."""

    limit: int
    live: Container[str] = ()
    _events: dict[str | None, set[str]] = field(default_factory=dict, repr=False)
    _clients: dict[str, str | None] = field(default_factory=dict, repr=False)
    _entering: Counter = field(default_factory=Counter, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _outstanding(self, client: str | None, live: Container[str]) -> int:
        held = self._events.get(client, set())
        for event in [e for e in held if e not in live]:
            self._forget(event)
        return len(self._events.get(client, ()))

    def enter(self, client: str | None, live: Container[str] | None = None) -> bool:
        """Whether the client may add a request now; if so it counts as entering until `entered`. `live`: the event
        ids still held (None: the door's own `live`)."""
        with self._lock:
            if self._full(client, self.live if live is None else live):
                return False
            self._entering[client] += 1
            return True

    def full(self, client: str | None) -> bool:
        """Whether the client's next request would be refused now (nothing counts: `enter` decides)."""
        with self._lock:
            return self._full(client, self.live)

    def _full(self, client: str | None, live: Container[str]) -> bool:
        """Whether the client is at its limit, counting events still in `live` and those entering (lock held)."""
        return bool(self.limit) and self._outstanding(client, live) + self._entering[client] >= self.limit

    def entered(self, client: str | None, event: str | None) -> None:
        """The request has passed the door: into the queue as `event`, or not at all (None)."""
        with self._lock:
            self._entering[client] -= 1
            if not self._entering[client]:
                del self._entering[client]
            if event:
                self._events.setdefault(client, set()).add(event)
                self._clients[event] = client

    def finished(self, event: str) -> None:
        """The event was answered: its client has one fewer."""
        with self._lock:
            self._forget(event)

    def _forget(self, event: str) -> None:
        if event in self._clients:
            client = self._clients.pop(event)
            self._events[client].discard(event)
            if not self._events[client]:
                del self._events[client]


@contextmanager
def admitted(door: Admission, client: str | None) -> Iterator[None]:
    """One request that does not pass through the queue (the REST API) holds a place of its client's while it runs, as
    entering: beyond the door's limit it is refused with HTTP 429 and {"detail": REFUSED}, as at the queue's door. A
    door that also guards the queue (admit_per_client) counts the client's requests at both."""
    if not door.enter(client):
        raise HTTPException(status_code=TOO_MANY_REQUESTS, detail=REFUSED)
    try:
        yield
    finally:
        door.entered(client, None)


def admit_per_client(demo: gr.Blocks, door: Admission) -> gr.Blocks:
    """Guard the demo's queue with the door: a request whose client (space.clients.client_key) already has the door's
    limit of events waiting or running (at this queue or another door it guards, such as the REST API) is refused with
    HTTP 429 and the JSON reason {"detail": REFUSED}, which the page and gradio_client show as an error. The check wraps
    the queue's `push` (replaced on this instance), Gradio's one way into the queue for /queue/join and /call/<api>; an
    event stops counting as soon as its answer is sent (the queue's `send_message`, wrapped too: Gradio forgets an event
    only after its bookkeeping, which lags on a busy server, so a reader's next click was refused), or once the queue
    lets it go unanswered (cancelled, its page closed)."""
    queue = demo._queue
    push, send = queue.push, queue.send_message
    door.live = queue.event_ids_to_events

    async def admitted(body, request, username):
        client = client_key(request)
        if not door.enter(client, queue.event_ids_to_events):
            raise HTTPException(status_code=TOO_MANY_REQUESTS, detail=REFUSED)
        answer = (False, None, "error")
        try:
            answer = await push(body=body, request=request, username=username)
            return answer
        finally:
            success, event, _ = answer
            door.entered(client, event if success else None)

    def sending(event, message) -> None:
        send(event, message)
        if isinstance(message, ProcessCompletedMessage):
            door.finished(event._id)

    queue.push, queue.send_message = admitted, sending
    return demo


class RefuseAtTheDoor:
    """ASGI middleware: a POST that asks for a place in the queue (QUEUE_ROUTES) or to a route under `also` (the REST
    API's) from a client the door would refuse gets the door's 429 answer at once, before its body is read or routed:
    a flood's refusals, which arrive as fast as its client sends them, then cost the server little beside what
    everyone else is doing. It only looks; the doors themselves (admit_per_client, admitted) still count and decide.
    Runs on the server's event loop."""

    def __init__(self, app: ASGIApp, door: Admission, also: tuple[str, ...] = (), delay_s: float = 0.0) -> None:
        self.app, self.door, self.routes, self.delay_s = app, door, QUEUE_ROUTES + also, delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" and scope.get("method") == "POST" else ""
        if path.startswith(self.routes) and self.door.full(client_key(Request(scope))):
            await asyncio.sleep(self.delay_s)
            return await JSONResponse({"detail": REFUSED}, TOO_MANY_REQUESTS)(scope, receive, send)
        await self.app(scope, receive, send)
