"""Throughput, p50/p95 latency and errors of the running app under 1, 4 and 16 concurrent gradio_client users.

Run from the repository root: `python -m benchmarks.bench_load [--requests 3] [--clients 1 4 16] [--model DIR]
[--concurrency-limit N] [--precision auto|float32|bfloat16] [--batch-size N]`. `--precision float32 --batch-size 1`
is the app before batching (one prediction at a time, float32); the defaults are today's app (auto, batches of 8).
It starts `python app.py` (tests/server.py) on a free loopback port behind one trusted proxy; each user is its
own gradio_client.Client from an address of its own (X-Forwarded-For, as the app's per-client limits count users)
sending its requests one after another, each with a new file (one pixel changed) so the app's prediction cache never
answers for the network; the overlay image is downloaded as a browser would.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from benchmarks.bench_predict import benchmark_model, load_average
from tests.server import EXAMPLES, distinct_xrays, running_server


@dataclass
class Level:
    clients: int
    latencies: list[float]
    errors: list[str]
    wall_s: float

    def line(self) -> str:
        p50, p95 = np.percentile(self.latencies, [50, 95]) if self.latencies else (float("nan"),) * 2
        done = len(self.latencies)
        return (f"clients {self.clients:3d}: {done + len(self.errors):4d} requests in {self.wall_s:7.1f} s, "
                f"throughput {done / self.wall_s:5.2f} req/s, p50 {p50:6.2f} s, p95 {p95:6.2f} s, "
                f"errors {len(self.errors)}")


Session = Callable[[int], AbstractContextManager[Callable[[Path], None]]]
"""Opens simulated user `number`'s connection and gives its call, which predicts one file (raising if the answer is
incomplete)."""


def user_address(number: int) -> dict[str, str]:
    """The header that makes simulated user `number` a client of its own behind the trusted proxy (up to 63,000 of
    them, in 198.18.0.0/15, the range set aside for benchmarks)."""
    return {"X-Forwarded-For": f"198.{18 + number // 63000}.{number // 250 % 252}.{number % 250 + 1}"}


@contextmanager
def gradio_user(url: str, downloads: Path, number: int) -> Iterator[Callable[[Path], None]]:
    """A gradio_client user: its call predicts through /predict and downloads the overlay, as a browser would."""
    client = Client(url, verbose=False, analytics_enabled=False, download_files=downloads, headers=user_address(number))

    def predict(path: Path) -> None:
        scores, decision, overlay, *_ = client.predict(handle_file(str(path)), api_name="/predict")
        if len(scores["confidences"]) != 2 or "threshold" not in decision or not Path(overlay).is_file():
            raise ValueError(f"incomplete answer: {scores}, {decision!r}, {overlay!r}")

    yield predict


def run_level(clients: int, files: list[Path], session: Session) -> Level:
    """`clients` users started together, each predicting its share of `files` one after another."""
    latencies: list[float] = []
    errors: list[str] = []
    started: list[float] = []
    barrier = threading.Barrier(clients, action=lambda: started.append(time.perf_counter()))

    def user(number: int, paths: list[Path]) -> None:
        with session(number) as predict:
            barrier.wait()
            for path in paths:
                start = time.perf_counter()
                try:
                    predict(path)
                    latencies.append(time.perf_counter() - start)
                except Exception as error:
                    errors.append(f"{type(error).__name__}: {error}")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(user, range(clients), [files[i::clients] for i in range(clients)]))
    return Level(clients, latencies, errors, time.perf_counter() - started[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=3, help="predict requests per client per level")
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    parser.add_argument("--concurrency-limit", type=int,
                        help="GRADIO_DEFAULT_CONCURRENCY_LIMIT for the server (Gradio's default: 1)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                        help="XRAY_PRECISION for the server (default auto)")
    parser.add_argument("--batch-size", type=int,
                        help="XRAY_MAX_BATCH_SIZE for the server: predictions run together (1: one at a time; "
                             "default: measured by the server)")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    model_path = benchmark_model(tmp / "model", args.model)
    files = iter(distinct_xrays(EXAMPLES / "covid-1.jpg", tmp / "images", 1 + sum(args.clients) * args.requests))
    env = {"GRADIO_DEFAULT_CONCURRENCY_LIMIT": str(args.concurrency_limit)} if args.concurrency_limit else {}
    env["XRAY_PRECISION"] = args.precision
    env["XRAY_TRUSTED_PROXIES"] = "1"
    if args.batch_size:
        env["XRAY_MAX_BATCH_SIZE"] = str(args.batch_size)
    with running_server(model_path, tmp / "feedback", tmp / "app.log", env) as server:
        users = partial(gradio_user, server.url, tmp / "downloads")
        run_level(1, [next(files)], users)
        print(f"model: {model_path}; image: covid-1.jpg (512x512) variants; {args.requests} requests per client; "
              f"server concurrency limit: {args.concurrency_limit or 'Gradio default (1)'}; "
              f"precision {args.precision}, batches of up to {args.batch_size or 'the measured size'}")
        for clients in args.clients:
            level = run_level(clients, [next(files) for _ in range(clients * args.requests)], users)
            print(level.line(), flush=True)
            for error in sorted(set(level.errors))[:5]:
                print(f"    error: {error}")
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
