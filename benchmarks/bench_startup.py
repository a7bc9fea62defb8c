"""How long `python app.py` takes until its page answers, with an empty precision cache (cold) and with the cache that
start left (warm), and the resident memory it peaked at by then.

Run from the repository root: `python -m benchmarks.bench_startup [--runs 2] [--model DIR]`. Each run starts the
app (tests/server.py) with XRAY_PRECISION_CACHE in a new empty folder, which makes `auto` time the loaded model in
both precisions on the example films, then starts it again on the cache that run wrote (the measurement is read
back). Prints seconds and peak resident memory (VmHWM) per start, the CPU's model name and the load average.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.bench_memory import memory_mib
from benchmarks.bench_predict import load_average
from model.artifact import DEFAULT_ARTIFACT
from tests.server import start_server, stop_server


def cpu_name() -> str:
    """lscpu's model name."""
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")), "unknown")


def start_once(model: Path, cache: Path, folder: Path) -> tuple[float, float]:
    """(seconds until the page answered, peak resident MiB by then) of one `python app.py`."""
    begun = time.perf_counter()
    server = start_server(model, folder / "feedback", folder / "app.log", {"XRAY_PRECISION_CACHE": str(cache)})
    seconds = time.perf_counter() - begun
    try:
        return seconds, memory_mib(server.process.pid, "VmHWM")
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="cold-then-warm pairs (default %(default)s)")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; load average before: {load_average()}")
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="xray-covid-startup-") as tmp:
            cache = Path(tmp) / "cache" / "precision.json"
            for kind in ("cold", "warm"):
                seconds, peak = start_once(args.model, cache, Path(tmp) / kind)
                print(f"run {run + 1} {kind}: page answered after {seconds:.1f} s, peak resident memory "
                      f"{peak:,.0f} MiB (precision cache {'written' if cache.is_file() else 'absent'})")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
