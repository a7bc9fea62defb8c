"""What one client may have in flight: its requests at the queue's door (space.admission) and its uploads
(space.upload_limits), in plain objects and on a small Gradio app through gradio_client and a real browser."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client

from space.admission import REFUSED, Admission, RefuseAtTheDoor, admit_per_client
from space.upload_limits import UploadLedger, UploadLimits
from tests.server import free_port

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
CHROMIUM = Path("/usr/bin/chromium")
MB = 2**20


def test_a_client_enters_while_fewer_than_the_limit_of_its_events_are_in_the_queue():
    door, live = Admission(limit=2), set()
    for event in ("a1", "a2"):
        assert door.enter("a", live)
        door.entered("a", event)
        live.add(event)
    assert not door.enter("a", live), "a third while two wait or run"
    assert door.enter("b", live), "another client is not held up"
    door.entered("b", None)
    live.discard("a1")
    assert door.enter("a", live), "one of its events left the queue"
    assert not door.enter("a", live), "the one entering counts until it has passed the door"
    door.entered("a", None)
    assert door.enter("a", live) and Admission(limit=0).enter("a", {"x"}), "0 is no limit"


def test_an_answered_event_stops_counting_before_the_queue_forgets_it_and_a_gone_one_is_forgotten():
    door, live = Admission(limit=1), {"answered", "gone"}
    assert door.enter("a", live)
    door.entered("a", "answered")
    assert not door.enter("a", live)
    door.finished("answered")
    assert door.enter("a", live), "answered, though the queue still holds its id"
    door.entered("a", "gone")
    assert door.enter("a", live - {"gone"}), "left the queue unanswered (its page closed)"
    door.entered("a", None)
    assert door._events == door._clients == {} and not door._entering


def test_a_client_at_its_limit_is_refused_before_its_request_is_read_or_routed():
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient

    door, reached = Admission(limit=1, live={"held"}), []
    assert door.enter("198.51.100.1")
    door.entered("198.51.100.1", "held")

    async def routed(scope, receive, send):
        reached.append((scope["method"], scope["path"], (await receive())["body"]))
        await PlainTextResponse("routed")(scope, receive, send)

    guarded = RefuseAtTheDoor(routed, door, also=("/api/v1",))
    flooder = TestClient(guarded, client=("198.51.100.1", 5000))
    for path in ("/gradio_api/queue/join", "/gradio_api/call/predict", "/api/v1/predict"):
        refused = flooder.post(path, content=b"body")
        assert (refused.status_code, refused.json()) == (429, {"detail": REFUSED}), path
    assert reached == [], "refused before the body was read or the request routed"
    assert flooder.get("/gradio_api/call/predict/some-event").text == "routed", "its answers still stream"
    assert flooder.post("/gradio_api/upload", content=b"file").text == "routed", "uploads have their own limits"
    other = TestClient(guarded, client=("198.51.100.2", 5000))
    assert other.post("/gradio_api/queue/join", content=b"body").text == "routed", "another client is not held up"
    door.finished("held")
    assert flooder.post("/gradio_api/queue/join", content=b"join").text == "routed", "its event was answered"
    assert reached[-1] == ("POST", "/gradio_api/queue/join", b"join")
    assert door._entering == {} and not Admission(limit=0).full("198.51.100.1"), "it only looks; 0 is no limit"


def test_uploads_are_limited_per_client_in_count_and_bytes_a_minute_and_in_bytes_kept():
    now = [0.0]
    ledger = UploadLedger(UploadLimits(per_minute=3, bytes_per_minute=10 * MB, bytes_kept=25 * MB, keep_s=3600),
                          clock=lambda: now[0])
    assert [ledger.refusal("a", MB) for _ in range(3)] == [None] * 3
    assert "at most 3 a minute" in ledger.refusal("a", MB)
    assert ledger.refusal("b", 9 * MB) is None, "another client has its own allowance"
    assert "at most 10 MB a minute" in ledger.refusal("b", 2 * MB)
    for minute in (1, 2):
        now[0] = 61.0 * minute
        assert ledger.refusal("a", 9 * MB) is None
    now[0] = 183.0
    assert "at most 25 MB, each kept for 60 minutes" in ledger.refusal("a", 5 * MB), "3 + 18 + 5 MB kept"
    now[0] = 3601.0
    assert ledger.refusal("a", 5 * MB) is None, "the first uploads are no longer kept"
    now[0] = 8000.0
    ledger.refusal("c", 1)
    assert set(ledger._uploads) == {"c"}, "clients whose uploads are all gone are forgotten"


@pytest.fixture
def waiting_app(monkeypatch):
    """A small app whose two buttons wait until released, its queue guarded with a limit of 2 per client; clients
    are named by the X-Forwarded-For entry of one trusted proxy (else by their address, 127.0.0.1)."""
    monkeypatch.setenv("XRAY_TRUSTED_PROXIES", "1")
    release = threading.Event()

    def wait(text: str) -> str:
        release.wait(60)
        return text

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        gr.Button("First").click(wait, box, out, api_name="first", concurrency_limit=10)
        gr.Button("Second").click(wait, box, out, api_name="second", concurrency_limit=10)
    admit_per_client(demo.queue(), Admission(limit=2))
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo, release
    finally:
        release.set()
        demo.close()


def queued(demo: gr.Blocks, count: int) -> None:
    for _ in range(2000):
        if len(demo._queue.event_ids_to_events) == count:
            return
        threading.Event().wait(0.005)
    raise AssertionError(f"the queue never held {count} events")


def test_gradio_client_reads_the_refusal_and_a_finished_request_frees_its_place(waiting_app):
    demo, release = waiting_app
    client = Client(demo.local_url, verbose=False, analytics_enabled=False)
    jobs = [client.submit("one", api_name="/first"), client.submit("two", api_name="/first")]
    queued(demo, 2)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        client.predict("three", api_name="/first")
    assert refused.value.response.status_code == 429 and refused.value.response.json() == {"detail": REFUSED}
    other = Client(demo.local_url, verbose=False, analytics_enabled=False, headers={"X-Forwarded-For": "192.0.2.7"})
    late = other.submit("other", api_name="/first")
    queued(demo, 3)
    release.set()
    assert [job.result(timeout=60) for job in [*jobs, late]] == ["one", "two", "other"]
    assert client.predict("four", api_name="/first") == "four"


def test_the_page_shows_the_refusal_as_an_error(waiting_app):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM_ARGS

    demo, _ = waiting_app
    client = Client(demo.local_url, verbose=False, analytics_enabled=False)
    client.submit("held", api_name="/first")
    queued(demo, 1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(demo.local_url)
        page.get_by_role("button", name="First").click()
        queued(demo, 2)
        page.get_by_role("button", name="Second").click()
        page.get_by_text(REFUSED).first.wait_for(timeout=30_000)
        browser.close()
