"""float32 against bfloat16: bare forward speed at batch 1 and 8, and how far the answers move over whole folders.

Run from the repository root: `python -m benchmarks.bench_precision [--runs 5] [--model DIR]
[--data ../shared/data/dev ../shared/data/external]`. Speed: the median of `--runs` timed calls of the compiled
network (after warm-up), milliseconds per image. Agreement: every image of each folder is predicted in both
precisions through the app's predictor (batches of 8, Grad-CAM included); the largest probability difference
and the number of decisions that changed at the model card's threshold are printed. ONNX Runtime is not
compared: tf2onnx is not installable here (see the README's performance section).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRECISIONS = ("float32", "bfloat16")
BATCH = 8


def forward_ms(network, size: int, batch: int, runs: int) -> float:
    """Median milliseconds per image of the compiled network on a random batch."""
    import numpy as np
    import tensorflow as tf

    compiled = tf.function(lambda images: network(images, training=False))
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    compiled(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        compiled(x).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / batch


def folder_probabilities(predictor, files: list[Path]) -> dict[Path, tuple[float, str]]:
    """Each readable file's probability and the precision that answered, in batches as the app runs them."""
    out: dict[Path, tuple[float, str]] = {}
    for start in range(0, len(files), BATCH):
        chunk = files[start : start + BATCH]
        for path, result in zip(chunk, predictor.predict_many(chunk)):
            if hasattr(result, "probability"):
                out[path] = (result.probability, result.precision)
    return out


def agreement(model, card, folder: Path) -> str:
    """Largest probability difference between the precisions and decisions changed, over one folder."""
    from model.data import scan_folder
    from model.serving.predictor import predictor_from_model

    files = [example.path for example in scan_folder(folder)]
    start = time.perf_counter()
    answers = {p: folder_probabilities(predictor_from_model(model, card, p), files) for p in PRECISIONS}
    probs = {p: {f: prob for f, (prob, _) in found.items()} for p, found in answers.items()}
    recomputed = sum(served == "float32" for _, served in answers["bfloat16"].values())
    common = sorted(set(probs["float32"]) & set(probs["bfloat16"]))
    differences = [abs(probs["float32"][f] - probs["bfloat16"][f]) for f in common]
    changed = sum((probs["float32"][f] >= card.threshold) != (probs["bfloat16"][f] >= card.threshold) for f in common)
    return (f"{folder}: {len(common)} images, largest probability difference {max(differences):.4f}, "
            f"mean {statistics.mean(differences):.4f}, decisions changed {changed}, {recomputed} near the threshold "
            "recomputed in float32 "
            f"(threshold {card.threshold:.3f}; {time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed calls per precision and batch size")
    parser.add_argument("--model", type=Path, help="artifact folder (default: shipped, else reference)")
    parser.add_argument("--data", type=Path, nargs="*", default=[Path("../shared/data/dev")],
                        help="labelled folders to compare the precisions on (none: speed only)")
    args = parser.parse_args()

    from benchmarks.bench_predict import benchmark_model, load_average
    from model.artifact import load_artifact
    from model.precision import in_precision

    load_before = load_average()
    model_path = benchmark_model(Path("/tmp/bench-precision-model"), args.model)
    model, card = load_artifact(model_path)
    print(f"model: {model_path} ({card.input_size} px); median of {args.runs} runs")
    speeds = {}
    for precision in PRECISIONS:
        network = in_precision(model, precision)
        speeds[precision] = {b: forward_ms(network, card.input_size, b, args.runs) for b in (1, BATCH)}
        print(f"  {precision:9s} batch 1: {speeds[precision][1]:7.1f} ms/image; "
              f"batch {BATCH}: {speeds[precision][BATCH]:7.1f} ms/image", flush=True)
    for b in (1, BATCH):
        print(f"  speed-up bfloat16 over float32 at batch {b}: {speeds['float32'][b] / speeds['bfloat16'][b]:.2f}x")
    for folder in args.data:
        print("  " + agreement(model, card, folder), flush=True)
    print(f"load average (1, 5, 15 min): before {load_before}; after {load_average()}")


if __name__ == "__main__":
    main()
