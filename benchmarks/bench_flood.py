"""Another client's predictions and flags while one client floods the app: latency against the same requests idle.

The flood (200 requests by default) is kept outstanding from a process of its own (tests/flood.py), each request sent
again once answered, or 0.25 s after it is refused at the queue's door; the other client sends its requests one
after another through Gradio's /call API, timed from joining the queue to the answer (each file uploaded first, not
timed). Target (issue 31): each within 3x its idle time plus one batch, none refused. Prints the idle medians, every
request under the flood with its ratio to idle, the flood's answers and refusals, the server's precision and batch
(its start-up log), the CPU and the load average. `--requests-per-client 0` shows the app without admission.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.bench_predict import benchmark_model, load_average
from model.precision import cpu_model
from tests.flood import answer, flooding, upload
from tests.server import EXAMPLES, distinct_xrays, running_server

READER, PASSWORD = "dr_lone", "lone-pass"
TIMES_IDLE = 3


def one_batch_s(log: str) -> tuple[str, float]:
    """The server's precision and batch as its start-up log says, and one batch's seconds from the per-image time it
    measured at that batch and precision (0 when the log does not say)."""
    chosen = re.findall(r"precision (\w+), batch (\d+)", log)
    if not chosen:
        return "precision/batch not logged", 0.0
    precision, batch = chosen[-1]
    measured = re.findall(rf"{precision}: batch 1 \d+ ms, batch {batch} (\d+) ms", log)
    per_image = int(measured[-1]) / 1000 if measured else 0.0
    return f"precision {precision}, batch {batch}", per_image * int(batch)


def timed(url: str, api: str, inputs, paths: list[Path]) -> list[tuple[float, str]]:
    """Seconds from joining to the answer of each request, one after another, with its answer or refusal."""
    results = []
    with httpx.Client(base_url=url, headers={"X-Forwarded-For": "198.51.100.50"}, timeout=300) as http:
        for path in paths:
            data = inputs(upload(http, path))
            start = time.perf_counter()
            try:
                outcome = answer(http, api, data)
            except httpx.HTTPStatusError as error:
                outcome = f"refused {error.response.status_code}"
            results.append((time.perf_counter() - start, outcome))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    parser.add_argument("--flood", type=int, default=200, help="requests the flooding client keeps outstanding")
    parser.add_argument("--requests", type=int, default=5, help="the other client's requests per endpoint and phase")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--requests-per-client", type=int, help="XRAY_REQUESTS_PER_CLIENT (default: the app's)")
    parser.add_argument("--flooder-nice", type=int, default=0,
                        help="niceness of the flooding process (e.g. 19: it takes only the CPU the server leaves, as "
                             "a flooder on its own machine would; default 0: it competes for this machine's cores)")
    args = parser.parse_args()

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    model_path = benchmark_model(tmp / "model", args.model)
    env = {"XRAY_TRUSTED_PROXIES": "1", "XRAY_PRECISION": args.precision,
           "XRAY_READERS": f"{READER}:{PASSWORD},dr_flood:flood-pass",
           "XRAY_UPLOADS_PER_MINUTE": str(4 * args.requests + 10)}  # the other client uploads each of its files
    if args.requests_per_client is not None:
        env["XRAY_REQUESTS_PER_CLIENT"] = str(args.requests_per_client)
    endpoints = {
        "predict": (lambda image: [image], ["covid-1.jpg"]),
        "flag": (lambda image: [image, "negative", READER, PASSWORD, ""], ["covid-1.jpg", "negative", "dr_flood",
                                                                         "flood-pass", ""]),
    }
    with running_server(model_path, tmp / "feedback", tmp / "app.log", env) as server:
        chosen, batch_s = one_batch_s(server.log_tail(200_000))
        print(f"model: {model_path}; server: {chosen}, one batch {batch_s:.3f} s; CPU: {cpu_model()}; flood: "
              f"{args.flood} outstanding from one client, its process at niceness {args.flooder_nice}")
        for api, (inputs, flood_args) in endpoints.items():
            files = distinct_xrays(EXAMPLES / "normal-1.png", tmp / api, 2 * args.requests + 1)
            timed(server.url, api, inputs, files[:1])
            idle = timed(server.url, api, inputs, files[1:args.requests + 1])
            alone = statistics.median(seconds for seconds, _ in idle)
            with flooding(server.url, api, args.flood, EXAMPLES / flood_args[0], *flood_args[1:],
                          nice=args.flooder_nice) as seen:
                behind = timed(server.url, api, inputs, files[args.requests + 1:])
            flood = seen()
            budget = TIMES_IDLE * alone + batch_s
            slowest = max(seconds for seconds, _ in idle)
            print(f"/{api}: idle median {alone:.3f} s (of {len(idle)}, slowest {slowest:.3f} s); budget {budget:.3f} s "
                  f"({TIMES_IDLE}x idle plus one batch); behind the flood:")
            for seconds, outcome in behind:
                print(f"    {seconds:.3f} s = {seconds / alone:.1f}x idle, {outcome}"
                      f"{'' if seconds <= budget else ', over the budget'}")
            within = sum(seconds <= budget for seconds, _ in behind)
            middle = statistics.median(seconds for seconds, _ in behind)
            print(f"    within the budget: {within} of {len(behind)}; median {middle:.3f} s = "
                  f"{middle / alone:.1f}x idle")
            print(f"    the flood: first wave admitted {flood.wave[0]}, refused {flood.wave[1]}; {len(flood.done)} "
                  f"answered, {flood.refused} refused {flood.reasons}; {flood.errors}")
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
