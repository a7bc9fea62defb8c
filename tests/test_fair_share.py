"""Shared resources of the serving path: fair predict slots per client, the decode memory budget, client identity."""

from __future__ import annotations

import threading

from starlette.requests import Request

import settings
from model.decode_budget import DecodeBudget
from space.fairness import FairShare
from space.handlers import client_key


def wait_until(condition) -> None:
    for _ in range(2000):
        if condition():
            return
        threading.Event().wait(0.005)
    raise AssertionError("condition never became true")


def test_a_freed_slot_goes_to_the_client_with_fewest_running_not_to_the_pile():
    share, order, release = FairShare(slots=2), [], threading.Event()

    def call(client: str, name: str) -> None:
        with share.turn(client):
            order.append(name)
            release.wait()

    threads = [threading.Thread(target=call, args=("pile", f"pile-{i}")) for i in range(12)]
    for t in threads:
        t.start()
    wait_until(lambda: share.waiting("pile") == 10)
    lone = threading.Thread(target=call, args=("lone", "lone"))
    lone.start()
    wait_until(lambda: share.waiting("lone") == 1)
    release.set()
    for t in [*threads, lone]:
        t.join()
    assert order.index("lone") <= 2, order


def test_large_decodes_take_turns_within_the_budget_and_small_ones_pass():
    budget = DecodeBudget(budget_bytes=1000)
    inside, most, gate = [], [], threading.Event()

    def decode(size: int) -> None:
        with budget.reserve(size):
            inside.append(size)
            most.append(budget.in_use)
            gate.wait()
            inside.remove(size)

    threads = [threading.Thread(target=decode, args=(100,)) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(inside) == 1)
    assert budget.in_use == 700
    gate.set()
    for t in threads:
        t.join()
    assert max(most) <= 1000 and budget.in_use == 0
    with budget.reserve(1):
        with budget.reserve(10):
            assert budget.in_use == 77


def scope_request(*forwarded: bytes, peer: str = "127.0.0.1") -> Request:
    headers = [(b"x-forwarded-for", value) for value in forwarded]
    return Request({"type": "http", "headers": headers, "client": (peer, 5000), "method": "GET", "path": "/"})


def test_the_client_is_the_trusted_proxys_entry_across_every_header_line():
    two_lines = scope_request(b"6.6.6.6", b"7.7.7.7, 203.0.113.7")
    assert client_key(two_lines, proxies=1) == "203.0.113.7"
    assert client_key(two_lines, proxies=0) == "127.0.0.1", "with no trusted proxy a loopback peer's header is ignored"
    assert client_key(scope_request(b"6.6.6.6"), proxies=2) == "127.0.0.1"


def test_the_app_listens_on_loopback_unless_on_a_space_or_told():
    assert settings.server_name({}) == "127.0.0.1"
    assert settings.server_name({"SPACE_ID": "owner/xray"}) == "0.0.0.0"
    assert settings.server_name({"GRADIO_SERVER_NAME": "10.1.2.3", "SPACE_ID": "x"}) == "10.1.2.3"
