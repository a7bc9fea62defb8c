"""Sign-in timing: an unknown reader name against a known name with a wrong password, median of 20 each.

Run from the repository root: `python -m benchmarks.bench_login [--runs 20]`. Reader accounts come from
XRAY_READERS / XRAY_READERS_FILE when set, else one hashed account at the default PBKDF2 cost. Each attempt
goes through feedback.check_login with a fresh LoginGuard (so lockouts never answer early), as the app's flag
endpoint does; the two kinds alternate so load from other processes falls on both alike. Target: the medians
within 20% of each other, so response time does not tell which reader names exist.
"""

from __future__ import annotations

import argparse
import statistics
import time

from feedback import LoginFailed, LoginGuard, check_login, hash_password, load_readers


def timed_refusal(readers: dict[str, str], name: str) -> float:
    """Seconds check_login takes to refuse `name` with a wrong password."""
    start = time.perf_counter()
    try:
        check_login(readers, LoginGuard(), name, "not-the-password", "bench")
    except LoginFailed:
        return time.perf_counter() - start
    raise RuntimeError(f"{name!r} signed in with the benchmark's wrong password")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    readers = load_readers() or {"dr_known": hash_password("right")}
    known = sorted(readers)[0]
    unknown, wrong = [], []
    for i in range(args.runs):
        unknown.append(timed_refusal(readers, f"dr_unknown_{i}"))
        wrong.append(timed_refusal(readers, known))
    a, b = statistics.median(unknown), statistics.median(wrong)
    print(f"unknown reader: median {a * 1000:.1f} ms over {args.runs}")
    print(f"wrong password: median {b * 1000:.1f} ms over {args.runs}")
    print(f"ratio {max(a, b) / min(a, b):.3f} (target: at most 1.20)")


if __name__ == "__main__":
    main()
