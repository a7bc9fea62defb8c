"""The REST API against gradio_client on one running app: latency per image, and throughput at 1, 4 and 16 concurrent
clients as a share of the in-process ceiling.

Run from the repository root: `python -m benchmarks.bench_rest [--latency-runs 5] [--requests 2] [--clients 1 4 16]
[--model DIR] [--routes rest gradio]`. The ceiling is measured first, in this process with no server: the served
predictor (precision and batch size as the app chooses them) running network, Grad-CAM and gate on batches of its
batch size. Then `python app.py` starts (tests/server.py) behind one trusted proxy, with the upload allowance off;
latency is one client's requests one after another, the two routes interleaved; at each level every simulated client
has an address of its own (X-Forwarded-For, as the app's per-client limits count users) and sends its requests one
after another. Every request carries a new file (one pixel changed), so the prediction cache never answers. REST
asks for no heatmap (a caller who wants it adds ?heatmap=1); gradio_client gets and downloads the page's overlay.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
from gradio_client import Client, handle_file

from benchmarks.bench_load import Level, gradio_user, run_level, user_address
from benchmarks.bench_predict import benchmark_model, load_average
from model.precision import cpu_model
from tests.server import EXAMPLES, distinct_xrays, running_server

CEILING_BATCHES = 5
WARMUP_BATCHES = 2
GOAL = 0.60


def ceiling(predictor, files: list[Path]) -> float:
    """Images a second of the served predictor on decoded images in batches of its batch size (preprocessing,
    network, Grad-CAM and gate: what the server's batcher runs; the server decodes in each request's thread): the
    median batch's, after WARMUP_BATCHES, so that a burst of load from other processes does not set it."""
    from model.serving.predictor import decode

    size = predictor.batch_size
    items = [decode(p) for p in files]
    for i in range(WARMUP_BATCHES):
        predictor.predict_decoded(items[i * size:(i + 1) * size])
    seconds = []
    for i in range(WARMUP_BATCHES, WARMUP_BATCHES + CEILING_BATCHES):
        start = time.perf_counter()
        predictor.predict_decoded(items[i * size:(i + 1) * size])
        seconds.append(time.perf_counter() - start)
    return size / statistics.median(seconds)


def rest_predict(http: httpx.Client, path: Path) -> None:
    response = http.post("api/v1/predict", files={"file": (path.name, path.read_bytes())})
    response.raise_for_status()
    if response.json()["status"] != "answered":
        raise ValueError(f"not answered: {response.text[:200]}")


def gradio_predict(client: Client, path: Path) -> None:
    scores, decision, *_ = client.predict(handle_file(str(path)), api_name="/predict")
    if len(scores["confidences"]) != 2 or "threshold" not in decision:
        raise ValueError(f"incomplete answer: {scores}, {decision!r}")


@contextmanager
def rest_user(url: str, number: int) -> Iterator[Callable[[Path], None]]:
    """A REST caller from an address of its own: its call posts one file to /api/v1/predict."""
    with httpx.Client(base_url=url, timeout=600, headers=user_address(number)) as http:
        yield partial(rest_predict, http)


def latencies(url: str, files: list[Path]) -> dict[str, list[float]]:
    """Seconds per image of each route for one client, the routes interleaved so that load falls on both alike."""
    times: dict[str, list[float]] = {"REST POST /api/v1/predict": [], "gradio_client /predict": []}
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False,
                    headers={"X-Forwarded-For": "198.51.100.200"})
    with httpx.Client(base_url=url, timeout=600, headers={"X-Forwarded-For": "198.51.100.201"}) as http:
        for rest_file, page_file in zip(files[::2], files[1::2]):
            for name, call in (("REST POST /api/v1/predict", lambda: rest_predict(http, rest_file)),
                               ("gradio_client /predict", lambda: gradio_predict(client, page_file))):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client per level")
    parser.add_argument("--latency-runs", type=int, default=5, help="sequential requests per route for the latency")
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    parser.add_argument("--routes", nargs="+", choices=["rest", "gradio"], default=["rest", "gradio"],
                        help="routes whose throughput is measured (latency always compares both)")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rest-"))
    model_path = benchmark_model(tmp / "model", args.model)
    needed = 2 * 64 + 2 * args.latency_runs + 2 + len(args.routes) * sum(args.clients) * args.requests
    files = iter(distinct_xrays(EXAMPLES / "covid-1.jpg", tmp / "images", needed))
    from model.serving.predictor import load_predictor

    predictor = load_predictor(model_path, serving=True)
    rate = ceiling(predictor, [next(files) for _ in range(64)])
    print(f"CPU: {cpu_model()}; model: {model_path}; image: covid-1.jpg variants")
    print(f"in-process ceiling before the server: {rate:.2f} images/s ({predictor.precision}, batches of "
          f"{predictor.batch_size}; network, Grad-CAM and gate on decoded images, median of {CEILING_BATCHES} batches, no server)")
    shares: list[tuple[str, Level]] = []
    env = {"XRAY_TRUSTED_PROXIES": "1", "XRAY_UPLOADS_PER_MINUTE": "0", "XRAY_UPLOAD_MB_PER_MINUTE": "0",
           "XRAY_UPLOAD_MB_KEPT": "0"}
    with running_server(model_path, tmp / "feedback", tmp / "app.log", env) as server:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            rest_predict(http, next(files))
        gradio_predict(Client(server.url, verbose=False, analytics_enabled=False, download_files=False), next(files))
        times = latencies(server.url, [next(files) for _ in range(2 * args.latency_runs)])
        for name, seconds in times.items():
            print(f"latency per image, one client, {name}: median {statistics.median(seconds) * 1000:.0f} ms "
                  f"(min {min(seconds) * 1000:.0f}, max {max(seconds) * 1000:.0f}; {len(seconds)} images)")
        users = {"rest": partial(rest_user, server.url), "gradio": partial(gradio_user, server.url, tmp / "downloads")}
        for route in args.routes:
            for clients in args.clients:
                level = run_level(clients, [next(files) for _ in range(clients * args.requests)], users[route])
                shares.append((route, level))
                print(f"{route:6s} {level.line()}", flush=True)
                for error in sorted(set(level.errors))[:5]:
                    print(f"    error: {error}")
    after = ceiling(predictor, [next(files) for _ in range(64)])
    best = max(rate, after)
    print(f"in-process ceiling after the server: {after:.2f} images/s; shares below are of the higher, {best:.2f}")
    for route, level in shares:
        share = len(level.latencies) / level.wall_s / best
        verdict = f"; goal >= {GOAL:.0%}: {'met' if share >= GOAL else 'NOT met'}" if level.clients == 16 else ""
        print(f"{route:6s} clients {level.clients:3d}: {share:.0%} of the in-process ceiling{verdict}")
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
