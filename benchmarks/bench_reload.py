"""The running app's memory over hot reloads: RSS and threads after each of 10 new model versions served.

Run from the repository root: `python -m benchmarks.bench_reload [--reloads 10] [--clients 16] [--model DIR]`. It
starts `python app.py` (tests/server.py) on a copy of the model's folder (its files linked, the card copied), sends a
burst of `--clients` concurrent predictions (each client from an address of its own) and reads the resting memory.
Then, per reload, it writes the card again with a new version (as python -m model.promote installs one), predicts one
image at a time (the same client, its uploads not limited) until the answers name the new version (the app loads it beside the serving one), sends the burst
again (the new model has a cache of its own, so every one runs the network) and, after a pause, reads VmRSS and the
thread count from /proc. Target (issue 31): RSS after the last reload within 100 MiB of RSS after the first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.bench_load import user_address
from benchmarks.bench_memory import NO_UPLOAD_LIMITS, memory_mib, threads
from benchmarks.bench_predict import benchmark_model, load_average
from model.artifact import CARD_FILE
from model.precision import cpu_model
from tests.flood import upload
from tests.server import EXAMPLES, distinct_xrays, running_server

REST_S = 3.0
LOAD_TIMEOUT_S = 600.0


def linked_copy(source: Path, folder: Path) -> Path:
    """The artifact folder `source` as `folder`: its files linked, its card a copy of its own to rewrite."""
    folder.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            (folder / path.name).symlink_to(path.resolve())
    (folder / CARD_FILE).unlink()
    (folder / CARD_FILE).write_text((source / CARD_FILE).read_text())
    return folder


def served_version(url: str, path: Path, client: int) -> str:
    """One prediction of `path` from client number `client`: the model version its answer names."""
    with httpx.Client(base_url=url, headers=user_address(client), timeout=300) as http:
        response = http.post("gradio_api/call/predict", json={"data": [upload(http, path)]})
        response.raise_for_status()
        stream = http.get(f"gradio_api/call/predict/{response.json()['event_id']}").text
    outputs = next((json.loads(line[len("data: "):]) for line in stream.splitlines()
                    if line.startswith("data: [")), None)
    if outputs is None:
        raise RuntimeError(f"no answer: {stream[:300]}")
    return outputs[-1]


def burst(url: str, files: list[Path]) -> set[str]:
    """Every file predicted at once, each from a client of its own: the versions the answers name."""
    with ThreadPoolExecutor(len(files)) as pool:
        return set(pool.map(lambda item: served_version(url, item[1], item[0] + 1), enumerate(files)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=10, help="new model versions to install one after another")
    parser.add_argument("--clients", type=int, default=16, help="concurrent predictions after each reload")
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    source = benchmark_model(tmp / "built", args.model)
    model_path = linked_copy(source, tmp / "model")
    card = json.loads((model_path / CARD_FILE).read_text())
    files = distinct_xrays(EXAMPLES / "normal-1.png", tmp / "images", args.clients + 1)
    env = {"XRAY_TRUSTED_PROXIES": "1", "XRAY_PRECISION_CACHE": str(tmp / "precision.json"), **NO_UPLOAD_LIMITS}
    with running_server(model_path, tmp / "feedback", tmp / "app.log", env) as server:
        pid = server.process.pid
        burst(server.url, files[1:])
        time.sleep(REST_S)
        print(f"model: {source}; CPU: {cpu_model()}; {args.clients} concurrent predictions per version")
        print(f"start-up plus one burst: {memory_mib(pid, 'VmRSS'):.0f} MiB, {threads(pid)} threads", flush=True)
        after = []
        for reload in range(1, args.reloads + 1):
            version = f"bench-reload-{reload}"
            (model_path / CARD_FILE).write_text(json.dumps({**card, "version": version}))
            start, deadline = time.perf_counter(), time.monotonic() + LOAD_TIMEOUT_S
            while served_version(server.url, files[0], 200) != version:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{version} not served within {LOAD_TIMEOUT_S:.0f} s:\n{server.log_tail()}")
                time.sleep(0.2)
            served = time.perf_counter() - start
            versions = burst(server.url, files[1:])
            time.sleep(REST_S)
            after.append(memory_mib(pid, "VmRSS"))
            print(f"reload {reload}: served after {served:.1f} s; burst answered by {sorted(versions)}; "
                  f"{after[-1]:.0f} MiB, {threads(pid)} threads", flush=True)
        growth = after[-1] - after[0]
        print(f"after the first reload {after[0]:.0f} MiB, after the last {after[-1]:.0f} MiB: {growth:+.0f} MiB "
              f"({'within' if growth <= 100 else 'beyond'} the 100 MiB target)")
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
