"""Corrections survive a SIGKILL mid-burst: the store stays consistent and keeps every acknowledged one once."""

from __future__ import annotations

import hashlib
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from feedback.store import CorrectionStore
from tests.server import (
    EXAMPLES,
    distinct_xrays,
    make_model,
    running_server,
    start_server,
    stop_server,
)

CORRECTIONS = 100
SENDERS = 16
KILL_AFTER_ACKS = 25
REQUEST_TIMEOUT_S = 120
RECORD_ID = re.compile(r"record \*\*#(\d+)\*\*")


def flag(client: Client, image: Path, reader: str) -> int:
    """Send one correction; the record id once the server has confirmed it."""
    job = client.submit(handle_file(str(image)), "negative", reader, "", f"note from {reader}", api_name="/flag")
    confirmation, _ = job.result(timeout=REQUEST_TIMEOUT_S)
    return int(RECORD_ID.search(confirmation).group(1))


def test_a_sigkill_during_100_concurrent_corrections_loses_no_acknowledged_one(tmp_path):
    model_dir = make_model(tmp_path / "model")
    root = tmp_path / "feedback"
    images = distinct_xrays(EXAMPLES / "covid-3.png", tmp_path / "images", CORRECTIONS)
    readers = [f"reader-{i:03d}" for i in range(CORRECTIONS)]
    acknowledged: dict[str, int] = {}
    failed: dict[str, Exception] = {}
    enough = threading.Event()

    server = start_server(model_dir, root, tmp_path / "first.log", {"XRAY_TRUSTED_PROXIES": "1"})
    clients = [Client(server.url, verbose=False, analytics_enabled=False, download_files=False,
                      headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(SENDERS)]

    def send(i: int) -> None:
        """Reader i flags from the address of sender i % SENDERS (one client may only have a few requests queued)."""
        try:
            acknowledged[readers[i]] = flag(clients[i % SENDERS], images[i], readers[i])
        except Exception as error:
            failed[readers[i]] = error
        if len(acknowledged) >= KILL_AFTER_ACKS:
            enough.set()

    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            for i in range(CORRECTIONS):
                pool.submit(send, i)
            enough.wait(timeout=300)
            assert stop_server(server, signal.SIGKILL) == -signal.SIGKILL
    finally:
        stop_server(server)
    assert KILL_AFTER_ACKS <= len(acknowledged) < CORRECTIONS, f"{len(acknowledged)} acked; {set(failed.values())}"
    assert len(acknowledged) + len(failed) == CORRECTIONS
    assert not [error for error in failed.values() if isinstance(error, AppError)], "the app refused a correction"

    with running_server(model_dir, root, tmp_path / "second.log") as restarted:
        assert CorrectionStore(root).integrity() == "ok"
        rows = CorrectionStore(root).all()
        by_reader: dict[str, list] = {}
        for row in rows:
            by_reader.setdefault(row.reader, []).append(row)
        for reader, record_id in acknowledged.items():
            assert len(by_reader.get(reader, [])) == 1, f"acknowledged #{record_id} of {reader} is not stored once"
            (row,) = by_reader[reader]
            image = images[readers.index(reader)]
            assert (row.id, row.correct_label, row.note) == (record_id, "negative", f"note from {reader}")
            assert row.image_sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
            assert Path(row.image_path).read_bytes() == image.read_bytes()
        assert all(len(found) == 1 for found in by_reader.values()) and len({row.id for row in rows}) == len(rows)

        after = Client(restarted.url, verbose=False, analytics_enabled=False, download_files=False)
        new_id = flag(after, images[-1], "reader-after-restart")
        assert new_id not in {row.id for row in rows}
        assert len(CorrectionStore(root).all()) == len(rows) + 1
