"""Two replicas on one PostgreSQL store: each is a separate process (as two app replicas are), so what one writes the
other sees, the quotas hold across both, and a replica killed mid-flag loses nothing it acknowledged."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time

import pytest

from feedback import DailyLimitReached, Quotas, StoreFull, open_store
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.test_store_contract import REPO, flag

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
