"""Latency of one prediction with its Grad-CAM through the app's `predict` function against a bare forward pass.

Run from the repository root: `python -m benchmarks.bench_predict [--runs 20] [--model DIR]
[--precision float32 bfloat16]`. For each precision both are timed in this process on the same network at
batch 1, interleaved so that load from other processes falls on both alike. Each app call gets a new file
(one pixel changed) so the app's prediction cache never answers for the network.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_RATIO = 1.1
WARMUP = 3
APP_NAME = "app predict (Grad-CAM, overlay, corrections)"


def benchmark_model(folder: Path, model: Path | None = None) -> Path:
    """The given model, else the app's default artifact, else the reference network with weights none (same cost)."""
    from model.artifact import DEFAULT_ARTIFACT, MODEL_FILE
    from model.config import REFERENCE
    from tests.server import make_model

    if model:
        return model
    if (DEFAULT_ARTIFACT / MODEL_FILE).is_file():
        return DEFAULT_ARTIFACT
    return make_model(folder, dataclasses.replace(REFERENCE, weights="none"))


def app_predict(demo) -> Callable:
    """The function behind the app's `predict` endpoint."""
    return next(block_fn.fn for block_fn in demo.fns.values() if block_fn.api_name == "predict")


def bare_forwards(network, x) -> dict[str, Callable[[], object]]:
    """The network alone at batch 1, the ways Keras offers, each returning a NumPy result."""
    import tensorflow as tf

    compiled = tf.function(lambda images: network(images, training=False))
    tensor = tf.convert_to_tensor(x)
    return {
        "tf.function(model)(x)": lambda: compiled(tensor).numpy(),
        "model.predict_on_batch(x)": lambda: network.predict_on_batch(x),
    }


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def time_precision(precision: str, model_path: Path, image: Path, runs: int, tmp: Path) -> dict[str, list[float]]:
    """Seconds of each app predict and bare forward call at batch 1 in one precision, interleaved."""
    import app
    from feedback import CorrectionStore
    from model.artifact import load_artifact
    from model.images import read_grey
    from model.precision import in_precision
    from model.preprocessing import to_network_input
    from model.serving.predictor import predictor_from_model
    from tests.server import distinct_xrays

    model, card = load_artifact(model_path)
    predictor = predictor_from_model(model, card, precision)
    files = distinct_xrays(image, tmp / f"images-{precision}", WARMUP + runs)
    predict = app_predict(app.build_demo(predictor, CorrectionStore(tmp / "feedback"), {}, model_path))
    bare = bare_forwards(in_precision(model, precision), to_network_input(read_grey(image), card.input_size)[None])
    for path in files[:WARMUP]:
        predict(str(path))
        for forward in bare.values():
            forward()
    times: dict[str, list[float]] = {APP_NAME: [], **{name: [] for name in bare}}
    for path in files[WARMUP:]:
        start = time.perf_counter()
        predict(str(path))
        times[APP_NAME].append(time.perf_counter() - start)
        for name, forward in bare.items():
            start = time.perf_counter()
            forward()
            times[name].append(time.perf_counter() - start)
    return times


def report(precision: str, times: dict[str, list[float]]) -> None:
    """Each median and the app's ratio to the fastest bare forward."""
    bare = [name for name in times if name != APP_NAME]
    fastest = min(bare, key=lambda name: median_ms(times[name]))
    print(f"{precision}:")
    for name, samples in times.items():
        print(f"  {name:48s} median {median_ms(samples):8.1f} ms  (min {min(samples) * 1000:.1f}, "
              f"max {max(samples) * 1000:.1f})")
    ratio = median_ms(times[APP_NAME]) / median_ms(times[fastest])
    print(f"  ratio app / fastest bare forward ({fastest}): {ratio:.3f} (target <= {TARGET_RATIO})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each (at least 5)")
    parser.add_argument("--model", type=Path, help="artifact folder or .keras file (default: shipped, else reference)")
    parser.add_argument("--image", type=Path, help="X-ray to predict (default: examples/covid-1.jpg)")
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")

    from tests.server import EXAMPLES

    load_before = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    model_path = benchmark_model(tmp / "model", args.model)
    image = args.image or EXAMPLES / "covid-1.jpg"
    print(f"model: {model_path}; image: {image.name}; {args.runs} timed runs of each, interleaved, "
          f"after {WARMUP} warm-up; batch 1")
    for precision in args.precision:
        report(precision, time_precision(precision, model_path, image, args.runs, tmp))
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
