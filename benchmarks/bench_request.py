"""Where one prediction's time goes through `gradio_client`: upload, the app's own steps, and Gradio's queue and files.

Run from the repository root: `python -m benchmarks.bench_request [--runs 10] [--precision auto]`. Starts
`python app.py` (the shipped model, else the reference network) and sends one prediction at a time, each with a new
file, as `gradio_client` does: the upload, the queued call, then the overlay's download. Each step is timed on its
own through the real server (the upload and the download by their HTTP requests, the call by the queue's
answer). In this process the same model, in the precision the server chose, times the app's own steps on the
same files: reading and decoding, the network with its Grad-CAM and input gate, the overlay, and its JPEG
encoding. What the call costs beyond those is Gradio's: the queue, pre- and post-processing, the output files.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.bench_predict import benchmark_model, load_average, median_ms  # noqa: E402

WARMUP = 2


def ms(samples: list[float]) -> str:
    return f"{median_ms(samples):8.1f} ms"


def through_server(url: str, files: list[Path], split: list[Path]) -> dict[str, list[float]]:
    """Seconds of a whole gradio_client.predict (on `files`), and of its steps on their own (on `split`): the
    upload, the queued call (Gradio's /call API: join, then the answer's event stream) and the overlay download."""
    import json

    import httpx
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, analytics_enabled=False)
    steps: dict[str, list[float]] = {"whole gradio_client.predict": [], "upload (POST /gradio_api/upload)": [],
                                     "queued call (join -> answer)": [], "overlay download (GET file)": []}
    with httpx.Client(base_url=url, timeout=120) as http:
        for i, (path, other) in enumerate(zip(files, split)):
            marks = [time.perf_counter()]
            client.predict(handle_file(str(path)), api_name="/predict")
            marks.append(time.perf_counter())
            [uploaded] = http.post("gradio_api/upload", files={"files": (other.name, other.read_bytes())}).json()
            marks.append(time.perf_counter())
            data = [{"path": uploaded, "orig_name": other.name, "meta": {"_type": "gradio.FileData"}}]
            event = http.post("gradio_api/call/predict", json={"data": data}).json()["event_id"]
            answer = http.get(f"gradio_api/call/predict/{event}").text
            marks.append(time.perf_counter())
            payload = next(line[len("data: "):] for line in answer.splitlines()
                           if line.startswith("data: ") and line != "data: null")
            http.get(json.loads(payload)[2]["url"]).raise_for_status()
            marks.append(time.perf_counter())
            if i >= WARMUP:
                for name, start, end in zip(steps, marks, marks[1:]):
                    steps[name].append(end - start)
    return steps


def in_process(model_path: Path, precision: str, files: list[Path]) -> dict[str, list[float]]:
    """Seconds of the app's own steps on the same files, with the same model and precision."""
    from PIL import Image

    from model.artifact import artifact_gate, load_artifact
    from model.images import load_bytes, read_grey
    from model.serving.overlay import overlay
    from model.serving.predictor import predictor_from_model
    from space.presentation import preview

    model, card = load_artifact(model_path)
    predictor = predictor_from_model(model, card, precision, artifact_gate(model_path, card))
    steps: dict[str, list[float]] = {"read + decode": [], "network + Grad-CAM + gate": [], "overlay drawing": [],
                                     "overlay JPEG encoding": []}
    for i, path in enumerate(files):
        marks = [time.perf_counter()]
        grey = read_grey(load_bytes(path))
        marks.append(time.perf_counter())
        [prediction] = predictor.predict_greys([grey])
        marks.append(time.perf_counter())
        picture = overlay(preview(grey), prediction.heatmap, prediction.crop_box, grey.shape)
        marks.append(time.perf_counter())
        Image.fromarray(picture).save(io.BytesIO(), format="JPEG")
        marks.append(time.perf_counter())
        if i >= WARMUP:
            for name, start, end in zip(steps, marks, marks[1:]):
                steps[name].append(end - start)
    return steps


def chosen(log: str) -> str:
    """The precision the server logged at start-up."""
    for line in log.splitlines():
        if line.startswith("precision "):
            return line.split()[1].rstrip(",")
    return "float32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed predictions (after 2 warm-up)")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else the reference network)")
    args = parser.parse_args()

    from tests.server import EXAMPLES, distinct_xrays, running_server

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-request-"))
    model_path = benchmark_model(tmp / "model", args.model)
    films = distinct_xrays(EXAMPLES / "covid-1.jpg", tmp / "films", 3 * (WARMUP + args.runs))
    with running_server(model_path, tmp / "feedback", tmp / "app.log", {"XRAY_PRECISION": args.precision}) as server:
        served = through_server(server.url, films[0::3], films[1::3])
        precision = chosen(server.log_tail(100_000))
    own = in_process(model_path, precision, films[2::3])
    call = statistics.median(served["queued call (join -> answer)"])
    ours = sum(statistics.median(samples) for samples in own.values())
    print(f"model: {model_path}; {args.runs} predictions of a {EXAMPLES / 'covid-1.jpg'} copy, one at a time, after "
          f"{WARMUP} warm-up; server precision {precision} (requested {args.precision})")
    print("through the server (median):")
    for name, samples in served.items():
        print(f"  {name:40s} {ms(samples)}")
    print("the app's own steps, in this process (median):")
    for name, samples in own.items():
        print(f"  {name:40s} {ms(samples)}")
    print(f"  {'sum':40s} {ours * 1000:8.1f} ms")
    print(f"Gradio's part of the queued call (queue, pre/post-processing, output files): {(call - ours) * 1000:.1f} ms")
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
