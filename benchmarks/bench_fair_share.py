"""A lone prediction behind another client's pile: its latency against the same prediction on an idle server.

The pile (60 predictions by default) is sent from a process of its own (tests/pile.py), as a second user's machine
would send it; the lone prediction goes once 10 of the pile are answered. Target (issue 18): at most 3x a lone
prediction on an idle server. Prints both latencies, the ratio, how many of the pile finished before the lone one,
the server's precision and batch size (its start-up log), and the load average. The pile's client may queue and upload
its whole pile (XRAY_REQUESTS_PER_CLIENT, XRAY_UPLOADS_PER_MINUTE), so this measures the share among admitted
requests; under the app's default (4) the door refuses most of the pile, the case bench_flood.py measures.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from gradio_client import Client, handle_file

from benchmarks.bench_predict import benchmark_model, load_average
from tests.pile import race
from tests.server import EXAMPLES, distinct_xrays, running_server

FIRST = 10


def timed_predict(client: Client, path: Path) -> float:
    start = time.perf_counter()
    client.predict(handle_file(str(path)), api_name="/predict")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    parser.add_argument("--pile", type=int, default=60, help="predictions the other client queues at once")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--batch-size", type=int, help="XRAY_MAX_BATCH_SIZE (default: measured by the server)")
    parser.add_argument("--requests-per-client", type=int,
                        help="XRAY_REQUESTS_PER_CLIENT (default: the pile, so all of it is queued)")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-fair-"))
    model_path = benchmark_model(tmp / "model", args.model)
    distinct_xrays(EXAMPLES / "covid-1.jpg", tmp / "pile", args.pile)
    lone = distinct_xrays(EXAMPLES / "normal-1.png", tmp / "lone", 6)
    pile = args.pile if args.requests_per_client is None else args.requests_per_client
    env = {"XRAY_TRUSTED_PROXIES": "1", "XRAY_PRECISION": args.precision, "XRAY_REQUESTS_PER_CLIENT": str(pile),
           "XRAY_UPLOADS_PER_MINUTE": str(args.pile)}
    if args.batch_size:
        env["XRAY_MAX_BATCH_SIZE"] = str(args.batch_size)
    with running_server(model_path, tmp / "feedback", tmp / "app.log", env) as server:
        client = Client(server.url, verbose=False, analytics_enabled=False, download_files=False,
                        headers={"X-Forwarded-For": "198.51.100.10"})
        timed_predict(client, lone[0])
        alone = statistics.median(timed_predict(client, path) for path in lone[1:5])
        timings = []
        result = race(server.url, tmp / "pile", FIRST, lambda: timings.append(timed_predict(client, lone[5])))
        chosen = re.findall(r"precision \w+, batch \d+", server.log_tail(200_000))
    behind = timings[0]
    print(f"model: {model_path}; server: {chosen[-1] if chosen else 'precision/batch not logged'}")
    print(f"lone prediction on an idle server: {alone:.2f} s (median of 4)")
    print(f"behind a pile of {args.pile} from another client: {behind:.2f} s = {behind / alone:.1f}x (target <= 3x); "
          f"{result.overtaken_by} of the {args.pile - FIRST} still waiting finished before it; pile: {result.errors}")
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
