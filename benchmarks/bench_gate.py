"""What the input gate costs a prediction: the predictor with its gate against the same network without it.

Run from the repository root: `python -m benchmarks.bench_gate [--runs 20] [--model DIR] [--batch 1]`.
Three variants run interleaved at the same batch on one fixture film: the network with Grad-CAM alone (what a
prediction cost before the gate), the same pass that also returns the gate's features, and the whole predictor
with its gate (features, header check, scoring, decision). Prints each median in ms and the ratio of the whole
predictor to the first (the target is at most 1.05), and the gate's numpy scoring timed alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_RATIO = 1.05
WARMUP = 3


def without_gate(model):
    """The pre-gate runtime: probability and Grad-CAM from one pass, no gate features."""
    import keras
    import tensorflow as tf

    from model.architecture import BASE_NAME, last_conv

    base = model.get_layer(BASE_NAME)
    both = keras.Model(base.input, [last_conv(base).output, base.output])
    head = model.layers[model.layers.index(base) + 1 :]
    size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def run(images):
        with tf.GradientTape() as tape:
            conv, x = both(images, training=False)
            for layer in head:
                x = layer(x, training=False)
        grads = tape.gradient(x, conv)
        cam = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(grads, axis=(1, 2), keepdims=True) * conv, axis=-1))
        return x[:, 0], cam

    return lambda images: [t.numpy() for t in run(tf.convert_to_tensor(images))]


def main() -> None:
    from model.artifact import DEFAULT_ARTIFACT, load_artifact
    from model.preprocessing import preprocessing_of, to_network_input
    from model.serving.predictor import decode, load_predictor
    from tests.conftest import FIXTURE_DIR

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    predictor = load_predictor(args.model, "float32")
    if predictor.gate is None:
        raise SystemExit(f"{args.model} has no input gate to measure")
    film = decode(next(FIXTURE_DIR.glob("covid/*.png")))
    items = [film] * args.batch
    inputs = np.stack([to_network_input(film.grey, preprocessing_of(predictor.card.config))] * args.batch)
    bare = without_gate(load_artifact(args.model)[0])
    variants = {"network + Grad-CAM (before the gate)": lambda: bare(inputs),
                "same pass with gate features": lambda: predictor.run(inputs),
                "predictor with gate (decode excluded)": lambda: predictor.predict_decoded(items)}
    times = {name: [] for name in variants}
    for run in range(WARMUP + args.runs):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            if run >= WARMUP:
                times[name].append((time.perf_counter() - start) * 1000 / args.batch)
    for name, values in times.items():
        print(f"{name:40s} median {statistics.median(values):7.1f} ms/image (min {min(values):.1f}, max {max(values):.1f})")
    first, last = (statistics.median(times[n]) for n in (next(iter(times)), list(times)[-1]))
    print(f"ratio with gate / without: {last / first:.3f} (target <= {TARGET_RATIO})")
    features = predictor.run(inputs)[2]
    start = time.perf_counter()
    for _ in range(1000):
        predictor.gate.check(features)
    print(f"gate scoring alone (numpy, batch {args.batch}): {(time.perf_counter() - start):.3f} ms per call")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
