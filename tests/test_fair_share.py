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


class Calls:
    """Threads that each hold a slot (FairShare.turn) or a reservation (DecodeBudget.reserve) until released by
    name; `entered` lists the names in the order they got in."""

    def __init__(self, enter) -> None:
        self.enter, self.entered, self.inside, self.threads, self.lock = enter, [], set(), {}, threading.Lock()
        self.most, self.releases = 0, {}

    def start(self, name: str, *args) -> None:
        self.releases[name] = threading.Event()

        def run() -> None:
            with self.enter(*args):
                with self.lock:
                    self.entered.append(name)
                    self.inside.add(name)
                    self.most = max(self.most, len(self.inside))
                self.releases[name].wait()
                with self.lock:
                    self.inside.discard(name)

        self.threads[name] = threading.Thread(target=run, daemon=True)  # a stuck call cannot hang the run
        self.threads[name].start()

    def release(self, name: str) -> None:
        self.releases[name].set()
        self.threads[name].join(timeout=10)

    def finish(self) -> None:
        for name in list(self.threads):
            self.release(name)


def test_a_client_never_holds_more_slots_than_there_are_and_its_calls_go_in_the_order_they_came():
    share = FairShare(slots=2)
    calls = Calls(share.turn)
    for i in range(5):
        calls.start(f"c{i}", "one")
        wait_until(lambda: len(calls.entered) + share.waiting() == i + 1)
    assert calls.entered == ["c0", "c1"] and share.waiting("one") == 3
    for i in range(3):
        calls.release(calls.entered[i])
        wait_until(lambda: len(calls.entered) == i + 3)
    calls.finish()
    assert calls.entered == ["c0", "c1", "c2", "c3", "c4"] and calls.most == 2


def test_a_freed_slot_goes_to_the_client_with_fewer_calls_running_even_when_it_started_one_last():
    share = FairShare(slots=4)
    calls = Calls(share.turn)
    for name, client in (("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("a4", "A"), ("b2", "B")):
        calls.start(name, client)
        wait_until(lambda: name in calls.entered or share.waiting(client) == 1)
    assert calls.entered == ["a1", "a2", "a3", "b1"], "A started three and B one, B last"
    calls.release("a1")
    wait_until(lambda: len(calls.entered) == 5)
    assert calls.entered[4] == "b2", "A still runs two and B one: B's call is next, though A's came first"
    calls.finish()


def test_decodes_that_wait_start_in_the_order_they_came_and_a_small_one_does_not_overtake():
    budget = DecodeBudget(budget_bytes=7000)
    calls = Calls(budget.reserve)
    calls.start("holder", 500)
    wait_until(lambda: calls.entered == ["holder"])
    for i, (name, size) in enumerate((("big-1", 600), ("big-2", 600), ("small", 10))):
        calls.start(name, size)
        wait_until(lambda: len(budget._queue) + len(calls.entered) == i + 2)
    assert calls.entered == ["holder"], "the small decode (70 bytes) fits beside the holder yet waits its turn"
    calls.release("holder")
    wait_until(lambda: len(calls.entered) == 2)
    calls.release("big-1")
    wait_until(lambda: len(calls.entered) == 4)
    calls.finish()
    assert calls.entered == ["holder", "big-1", "big-2", "small"]


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
