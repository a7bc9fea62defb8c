"""Peak and resting memory of the running app while 1, 4 and 8 clients predict large DICOMs at once.

Run from the repository root: `python -m benchmarks.bench_memory [--clients 1 4 8] [--decode-memory-mb N]
[--model DIR]`. It starts `python app.py` (tests/server.py) and, per level, sends that many predictions of distinct
deflated 16-bit 6300 px grey DICOMs (tests/badfiles.py: about 550 KB each, 76 MiB of decoded pixels) together.
Before each level the process's peak resident memory is reset (`5` to /proc/PID/clear_refs); after it, the peak
(VmHWM) and, after a pause, the resting memory (VmRSS) are read. `--decode-memory-mb` sets XRAY_DECODE_MEMORY_MB
(a large value, e.g. 100000, lets every decode run at once: the app without the decode budget).

`--flood N` instead measures how memory and threads come back after a flood (issue 31, target: resting RSS within
250 MiB of the warmed instance, threads back to their idle count): the warmed instance is start-up plus a first burst
of 16 concurrent predictions of ordinary films; then N clients each predict a distinct 6-megapixel PNG at once (one
refused at the queue's door tries again after a pause), the peak RSS and the most threads seen are read while it
runs, and after SETTLE_S (past anyio's 10 s, after which it lets an idle worker thread go, the next time it hands out
work) one ordinary prediction is sent and the resting RSS and threads are read.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from benchmarks.bench_load import user_address
from benchmarks.bench_predict import benchmark_model, load_average
from model.precision import cpu_model
from tests.badfiles import HUGE_DICOM_SIDE, deflated_large_dicom
from tests.flood import answer, upload
from tests.server import EXAMPLES, distinct_xrays, running_server

REST_S = 5.0
SETTLE_S = 12.0
FLOOD_SIDE = 2450
"""6 megapixels: the flood's films are FLOOD_SIDE x FLOOD_SIDE."""
WARM_CLIENTS = 16
NO_UPLOAD_LIMITS = {"XRAY_UPLOADS_PER_MINUTE": "0", "XRAY_UPLOAD_MB_PER_MINUTE": "0", "XRAY_UPLOAD_MB_KEPT": "0"}
"""A benchmark's own clients upload more than a reader would (space.upload_limits)."""


def memory_mib(pid: int, field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of the process, in MiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def threads(pid: int) -> int:
    """The process's thread count now."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Threads:"))
    return int(line.split()[1])


def large_dicoms(folder: Path, count: int) -> list[Path]:
    """`count` distinct large DICOMs (sides 6300, 6299, ...), so the prediction cache never answers."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"large-{i}.dcm" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(deflated_large_dicom(HUGE_DICOM_SIDE - i))
    return paths


def burst(url: str, files: list[Path], downloads: Path) -> tuple[float, int]:
    """Predict every file at once, one client each from an address of its own (the app admits a few requests per
    client); (seconds until all answered, errors). The made DICOMs are not
    chest films, so the input gate may refuse them after the network ran: an answer either way."""
    def one(number_and_path: tuple[int, Path]) -> bool:
        number, path = number_and_path
        client = Client(url, verbose=False, analytics_enabled=False, download_files=downloads,
                        headers=user_address(number))
        try:
            scores, *_, status, _, _ = client.predict(handle_file(str(path)), api_name="/predict")
            return len(scores.get("confidences", [])) == 2 or status == "out_of_scope"
        except Exception as error:
            print(f"    error: {type(error).__name__}: {error}")
            return False

    start = time.perf_counter()
    with ThreadPoolExecutor(len(files)) as pool:
        answered = list(pool.map(one, enumerate(files)))
    return time.perf_counter() - start, answered.count(False)


def large_films(folder: Path, count: int) -> list[Path]:
    """`count` distinct 6-megapixel PNGs of a real film (one pixel changed in each), so the cache never answers."""
    folder.mkdir(parents=True, exist_ok=True)
    film = np.asarray(Image.open(EXAMPLES / "normal-1.png").convert("L").resize((FLOOD_SIDE, FLOOD_SIDE)))
    paths = [folder / f"film-{i:04d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        changed = film.copy()
        changed.flat[i] ^= 1
        Image.fromarray(changed).save(path, compress_level=1)
    return paths


def predicted(url: str, path: Path, number: int) -> bool:
    """One client's prediction of `path`, sent again 0.25 s after each refusal at the queue's door: answered?"""
    with httpx.Client(base_url=url, headers=user_address(number), timeout=600) as http:
        data = [upload(http, path)]
        while True:
            try:
                return answer(http, "predict", data) == "complete"
            except httpx.HTTPStatusError:
                time.sleep(0.25)


def all_at_once(url: str, files: list[Path], first: int) -> int:
    """Each file predicted by a client of its own (numbers from `first`), all at once; how many were not answered."""
    with ThreadPoolExecutor(len(files)) as pool:
        return list(pool.map(lambda item: predicted(url, item[1], first + item[0]), enumerate(files))).count(False)


def flood_settles(url: str, pid: int, clients: int, tmp: Path) -> None:
    """Warm the instance, flood it with `clients` 6-megapixel predictions, let it settle; print each stage."""
    ordinary = distinct_xrays(EXAMPLES / "normal-1.png", tmp / "ordinary", WARM_CLIENTS + 1)
    films = large_films(tmp / "films", clients)
    all_at_once(url, ordinary[:WARM_CLIENTS], 0)
    time.sleep(REST_S)
    warm, warm_threads = memory_mib(pid, "VmRSS"), threads(pid)
    print(f"warmed (start-up and {WARM_CLIENTS} concurrent predictions): {warm:.0f} MiB, {warm_threads} threads",
          flush=True)
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    most, running = [warm_threads], threading.Event()

    def watch_threads() -> None:
        while not running.wait(0.5):
            most.append(threads(pid))

    watcher = threading.Thread(target=watch_threads)
    watcher.start()
    start = time.perf_counter()
    unanswered = all_at_once(url, films, WARM_CLIENTS)
    seconds = time.perf_counter() - start
    running.set()
    watcher.join()
    peak = memory_mib(pid, "VmHWM")
    print(f"flood of {clients} concurrent {FLOOD_SIDE} x {FLOOD_SIDE} px predictions: {seconds:.0f} s, "
          f"{unanswered} unanswered; peak {peak:.0f} MiB, most threads {max(most)}", flush=True)
    time.sleep(SETTLE_S)
    print(f"settled {SETTLE_S:.0f} s: {memory_mib(pid, 'VmRSS'):.0f} MiB, {threads(pid)} threads", flush=True)
    all_at_once(url, ordinary[WARM_CLIENTS:], 0)
    time.sleep(REST_S)
    rest, rest_threads = memory_mib(pid, "VmRSS"), threads(pid)
    print(f"after one more prediction: {rest:.0f} MiB ({rest - warm:+.0f} MiB on the warmed instance; target within "
          f"250), {rest_threads} threads ({rest_threads - warm_threads:+d} on the warmed instance)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrent large DICOMs")
    parser.add_argument("--decode-memory-mb", type=int, help="XRAY_DECODE_MEMORY_MB for the server (default 1024)")
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    parser.add_argument("--flood", type=int, help="instead: N concurrent 6-megapixel predictions, then settle")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    model_path = benchmark_model(tmp / "model", args.model)
    env = {"XRAY_DECODE_MEMORY_MB": str(args.decode_memory_mb)} if args.decode_memory_mb else {}
    if args.flood:
        flood_env = {**env, "XRAY_TRUSTED_PROXIES": "1", **NO_UPLOAD_LIMITS}
        with running_server(model_path, tmp / "feedback", tmp / "app.log", flood_env) as server:
            print(f"model: {model_path}; CPU: {cpu_model()}; decode budget: {args.decode_memory_mb or 'default'} MiB")
            flood_settles(server.url, server.process.pid, args.flood, tmp)
        print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")
        return
    files = large_dicoms(tmp / "dicoms", sum(args.clients) + 1)
    with running_server(model_path, tmp / "feedback", tmp / "app.log", env) as server:
        pid = server.process.pid
        burst(server.url, files[:1], tmp / "downloads")
        time.sleep(REST_S)
        start = memory_mib(pid, "VmRSS")
        print(f"model: {model_path}; decode budget: {args.decode_memory_mb or 'default (1024)'} MiB; "
              f"resting after one warm-up DICOM: {start:.0f} MiB")
        used = 1
        for clients in args.clients:
            before = memory_mib(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            seconds, errors = burst(server.url, files[used:used + clients], tmp / "downloads")
            used += clients
            peak = memory_mib(pid, "VmHWM")
            time.sleep(REST_S)
            rest = memory_mib(pid, "VmRSS")
            print(f"{clients} at once: peak {peak:.0f} MiB (+{peak - before:.0f} over {before:.0f}), resting {rest:.0f} "
                  f"MiB ({rest - start:+.0f} since the warm-up), {seconds:.1f} s, errors {errors}", flush=True)
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
