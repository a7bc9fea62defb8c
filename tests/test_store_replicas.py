"""Two replicas on one PostgreSQL store: each is a separate process (as two app replicas are), so what one writes the
other sees, the quotas hold across both, and a replica killed mid-flag loses nothing it acknowledged."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from feedback import open_store
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.server import EXAMPLES, distinct_xrays, make_model, start_server, stop_server
from tests.test_store_contract import REPO, flag

RECORD_ID = re.compile(r"record \*\*#(\d+)\*\*")
WINDOW_S = 0.2
"""How long a replica waits between counting a flag against the quotas and writing it, to make a race certain."""
REPLICA = """
import sys, time
import feedback.postgres_store as pg
from feedback import DailyLimitReached, Quotas, StoreFull, open_store
from tests.test_store_contract import flag

url, reader, first, count, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
checked = pg._check_limits
def slow_check(*args):
    checked(*args)
    time.sleep(window)  # the race window between counting and writing, held wide open
pg._check_limits = slow_check
store = open_store(url, Quotas(daily_flags=int(sys.argv[6]), records=int(sys.argv[7])))
print("ready", flush=True)
sys.stdin.readline()
for seed in range(first, first + count):
    try:
        print("ok", flag(store, seed, reader=reader)[0], flush=True)
    except (DailyLimitReached, StoreFull) as error:
        print("refused", type(error).__name__, flush=True)
"""


def app_flag(client: Client, image: Path, reader: str) -> tuple[str, int]:
    """Flag the image as negative through the app's page; ("recorded" or "already recorded", record id)."""
    confirmation, _ = client.predict(handle_file(str(image)), "negative", reader, "", "", api_name="/flag")
    record_id = int(RECORD_ID.search(confirmation).group(1))
    return ("already recorded" if "already" in confirmation else "recorded"), record_id


def replica(url: str, reader: str, first: int, count: int, daily_flags: int = 1000, records: int = 1000,
            window_s: float = WINDOW_S) -> subprocess.Popen:
    """A process that, once told to go (a line on its stdin), flags `count` new images as `reader`, one line each."""
    process = subprocess.Popen([sys.executable, "-c", REPLICA, url, reader, str(first), str(count), str(window_s),
                                str(daily_flags), str(records)], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def go(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()


def outcomes(process: subprocess.Popen) -> list[str]:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    return out.split("\n")[:-1]


def test_a_flag_made_through_one_replica_is_seen_by_the_other(postgres_url):
    one, other = replica(postgres_url, "alice", 1, 2), open_store(postgres_url)
    go(one)
    assert outcomes(one) == ["ok 1", "ok 2"]
    assert [c.id for c in other.all()] == [1, 2]
    assert flag(other, 1, reader="alice") == (1, False), "the other replica knows the verdict is recorded"
    assert flag(other, 1, reader="bob") == (3, True)


@pytest.mark.parametrize("limit, kind", [("daily_flags", "DailyLimitReached"), ("records", "StoreFull")])
def test_two_replicas_flagging_at_once_cannot_both_pass_a_limit_one_fits_under(postgres_url, limit, kind):
    """Each replica counts, then waits WINDOW_S before writing: without one lock across replicas both would count
    the same flags and both write, and the store would end above its limit."""
    quotas = {"daily_flags": 3, "records": 1000} if limit == "daily_flags" else {"daily_flags": 1000, "records": 3}
    replicas = [replica(postgres_url, "alice", 10 * i, 4, **quotas) for i in (1, 2)]
    go(*replicas)
    lines = [line for process in replicas for line in outcomes(process)]
    assert sum(line.startswith("ok") for line in lines) == 3
    assert sorted(line for line in lines if not line.startswith("ok")) == [f"refused {kind}"] * 5
    assert open_store(postgres_url).count() == 3


def test_a_replica_killed_mid_flag_loses_no_acknowledged_flag_and_the_other_carries_on(postgres_url):
    victim = replica(postgres_url, "alice", 100, 50, window_s=0.05)
    go(victim)
    acknowledged = [int(victim.stdout.readline().split()[1]) for _ in range(5)]
    time.sleep(0.02)  # inside its next flag's transaction, most likely between counting and writing
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    acknowledged += [int(line.split()[1]) for line in victim.stdout.read().split("\n") if line.startswith("ok")]
    store = open_store(postgres_url)
    stored = store.all()
    assert set(acknowledged) <= {c.id for c in stored} and len(stored) - len(acknowledged) in (0, 1), \
        "a flag written but not yet acknowledged may stand; none acknowledged may be lost"
    assert all(store.image_bytes(c) for c in stored) and store.integrity() == "ok"
    survivor = replica(postgres_url, "bob", 1000, 2)
    go(survivor)
    assert [line.split()[0] for line in outcomes(survivor)] == ["ok", "ok"]
    assert store.count() == len(stored) + 2


def test_two_app_processes_on_one_postgresql_share_flags_quotas_and_survive_a_kill(postgres_url, tmp_path):
    """The real app twice (`python app.py`, XRAY_STORE_URL naming the server), as two replicas of a Space."""
    model = make_model(tmp_path / "model")
    images = distinct_xrays(EXAMPLES / "covid-3.png", tmp_path / "images", 12)
    env = {"XRAY_STORE_URL": postgres_url, "XRAY_FEEDBACK_DAILY_FLAGS": "3", "XRAY_TRUSTED_PROXIES": "1"}
    with ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start_server, model, tmp_path / f"unused-{i}", tmp_path / f"app-{i}.log", env)
                    for i in (0, 1)]
    servers = [future.result() for future in starting]
    try:
        one, other = (Client(s.url, verbose=False, analytics_enabled=False, download_files=False,
                             headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i, s in enumerate(servers))
        assert app_flag(one, images[0], "alice") == ("recorded", 1)
        assert app_flag(other, images[0], "alice") == ("already recorded", 1), "the other replica sees the flag"

        with ThreadPoolExecutor(4) as pool:
            sent = [pool.submit(app_flag, (one, other)[i % 2], images[i], "alice") for i in range(1, 5)]
        results = [future.exception() or future.result() for future in sent]
        assert sum(isinstance(r, tuple) for r in results) == 2, "alice's daily limit of 3 holds across both"
        assert all("daily limit" in str(r) for r in results if not isinstance(r, tuple))

        with ThreadPoolExecutor(4) as pool:
            sending = [pool.submit(app_flag, one, images[i], f"reader-{i}") for i in range(5, 12)]
            first = next(as_completed(sending)).result()
            assert stop_server(servers[0], signal.SIGKILL) == -signal.SIGKILL
        acknowledged = {first} | {f.result() for f in sending if not f.exception()}
        store = open_store(postgres_url)
        assert {record_id for _, record_id in acknowledged} <= {c.id for c in store.all()}
        assert store.integrity() == "ok"
        assert app_flag(other, images[11], "reader-after")[0] == "recorded", "the other replica carries on"
    finally:
        for server in servers:
            stop_server(server)
    assert not any(server.feedback_root.exists() for server in servers), "no replica wrote a local store"
