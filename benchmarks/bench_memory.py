"""Peak and resting memory of the running app while 1, 4 and 8 clients predict large DICOMs at once.

Run from the repository root: `python -m benchmarks.bench_memory [--clients 1 4 8] [--decode-memory-mb N]
[--model DIR]`. It starts `python app.py` (tests/server.py) and, per level, sends that many predictions of distinct
deflated 16-bit 6300 px grey DICOMs (tests/badfiles.py: about 550 KB each, 76 MiB of decoded pixels) together.
Before each level the process's peak resident memory is reset (`5` to /proc/PID/clear_refs); after it, the peak
(VmHWM) and, after a pause, the resting memory (VmRSS) are read. `--decode-memory-mb` sets XRAY_DECODE_MEMORY_MB
(a large value, e.g. 100000, lets every decode run at once: the app without the decode budget).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gradio_client import Client, handle_file

from benchmarks.bench_predict import benchmark_model, load_average
from tests.badfiles import HUGE_DICOM_SIDE, deflated_large_dicom
from tests.server import running_server

REST_S = 5.0


def memory_mib(pid: int, field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of the process, in MiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


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
                        headers={"X-Forwarded-For": f"198.51.100.{number + 1}"})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8], help="concurrent large DICOMs")
    parser.add_argument("--decode-memory-mb", type=int, help="XRAY_DECODE_MEMORY_MB for the server (default 1024)")
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    model_path = benchmark_model(tmp / "model", args.model)
    files = large_dicoms(tmp / "dicoms", sum(args.clients) + 1)
    env = {"XRAY_DECODE_MEMORY_MB": str(args.decode_memory_mb)} if args.decode_memory_mb else {}
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
