"""Which floating-point precision runs the network: float32, or bfloat16 where this CPU computes it faster.

CPU flags cannot tell where bfloat16 pays: with the same AVX512-BF16 flag and no AMX it ran 2x faster than
float32 on an AMD EPYC and 0.7x on an Intel Xeon. So `auto` measures: a network is timed in each precision on this
CPU, and bfloat16 is chosen only where it is faster by MARGIN and computes the same thing closely enough; the
choice is cached per CPU model and network (XRAY_PRECISION_CACHE), so it is measured once. Serving measures its
predictors with their decisions (model/serving/measure.py); feature extraction measures the frozen base here
(`measured_precision`). XRAY_PRECISION or --precision forces either.
The bfloat16 network is a copy of the float32 one whose convolutions and max-pooling run under Keras'
"mixed_bfloat16" policy (bfloat16 compute, float32 weights) and everything after them in float32, built in
its own scope so the global policy is left as it was.
Keras is imported where a network is built or timed, so that a command checks its --precision before TensorFlow
starts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

import settings

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "bfloat16")
MARGIN = 1.15
"""bfloat16 (or a larger batch) is chosen only when it is this many times faster per image."""
RUNS = 2
MEASURE_BATCH = 4
"""Images per timed pass when a frozen base is measured (serving measures at its own batch sizes)."""
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FEATURE_TOLERANCE = 0.02
"""The largest relative difference (L2, per image) between bfloat16 and float32 features that auto accepts."""


def requested_precision(requested: str | None = None) -> str:
    """What was asked for: the argument, else $XRAY_PRECISION, else auto; ValueError for an unknown name."""
    requested = (requested or settings.precision()).strip().lower()
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    return requested


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo, else the platform's), what a measured choice is cached by."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ms_per_image(run: Callable, inputs: np.ndarray, runs: int = RUNS) -> float:
    """The median time per image of `run(inputs)` over `runs` timed calls, after one untimed warm-up."""
    run(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(inputs)
        times.append((time.perf_counter() - start) * 1000 / len(inputs))
    return statistics.median(times)


def example_greys() -> list[np.ndarray]:
    """The shipped example films, decoded: what `auto` measures on (none in a tree without examples/)."""
    from model.images import EXTENSIONS, read_grey

    films = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in EXTENSIONS) if EXAMPLES.is_dir() else []
    return [read_grey(p) for p in films]


def cached_choice(key: str, cache_file: Path | None = None) -> dict | None:
    """The choice cached under `key` (in `cache_file`, else the configured file), or None."""
    try:
        return json.loads((cache_file or settings.precision_cache()).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


@contextmanager
def _only_writer(cache_file: Path) -> Iterator[None]:
    """Hold the cache's lock file (.NAME.lock beside it) exclusively: one process at a time reads, adds and writes."""
    with open(cache_file.with_name(f".{cache_file.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock, also when the process dies


def cache_choice(key: str, choice: dict, cache_file: Path | None = None) -> None:
    """Add a choice to the cache file; a cache that cannot be written is logged and left alone.

    The file is shared by every process of the account (each server, command and test), so the read, the addition
    and the write happen under a lock: two processes adding different keys at once both keep theirs."""
    cache_file = cache_file or settings.precision_cache()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with _only_writer(cache_file):
            try:
                cached = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                cached = {}
            written = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
            written.write_text(json.dumps({**cached, key: choice}, indent=2))
            os.replace(written, cache_file)  # whole, so a process reading it at the same time never sees half of it
    except OSError as error:
        log.warning("precision choice not cached in %s: %s", cache_file, error)


def relative_difference(exact: np.ndarray, approximate: np.ndarray) -> float:
    """The largest per-image L2 difference between two batches of outputs, relative to the exact one's norm."""
    exact, approximate = (np.asarray(a, dtype="float64").reshape(len(a), -1) for a in (exact, approximate))
    norms = np.maximum(np.linalg.norm(exact, axis=1), 1e-12)
    return float(np.max(np.linalg.norm(exact - approximate, axis=1) / norms))


def choose_by_timing(ms: dict[str, float], difference: float, margin: float = MARGIN,
                     tolerance: float = FEATURE_TOLERANCE) -> tuple[str, str]:
    """(precision, reason) from ms per image of each precision and bfloat16's relative difference."""
    shown = ", ".join(f"{name} {value:.1f} ms/image" for name, value in ms.items())
    if difference > tolerance:
        return "float32", f"auto: bfloat16 differs by {difference:.3f} (> {tolerance}) ({shown})"
    speedup = ms["float32"] / ms["bfloat16"]
    if speedup >= margin:
        return "bfloat16", f"auto: bfloat16 is {speedup:.2f}x faster ({shown})"
    return "float32", f"auto: bfloat16 is {speedup:.2f}x float32, not {margin:.2f}x faster ({shown})"


def measured_precision(network: keras.Model, inputs: np.ndarray, key: str, cache_file: Path | None = None) -> str:
    """What `auto` runs `network` (with no decision of its own: the frozen base extracting features) in.

    Times float32 and the bfloat16 copy on `inputs`, checks that their outputs agree within FEATURE_TOLERANCE, and
    picks by choose_by_timing; logged, and cached per CPU model and `key`."""
    cache_key = f"network|{cpu_model()}|{key}|{len(inputs)}"
    cached = cached_choice(cache_key, cache_file)
    if cached:
        log.info("precision %s for %s (%s; cached for %s)", cached["precision"], key, cached["reason"], cpu_model())
        return cached["precision"]
    copies = {"float32": network, "bfloat16": in_precision(network, "bfloat16")}
    ms = {name: ms_per_image(copy.predict_on_batch, inputs) for name, copy in copies.items()}
    outputs = {name: copy.predict_on_batch(inputs) for name, copy in copies.items()}
    precision, reason = choose_by_timing(ms, relative_difference(outputs["float32"], outputs["bfloat16"]))
    log.info("precision %s for %s (%s, measured on %s)", precision, key, reason, cpu_model())
    cache_choice(cache_key, {"precision": precision, "reason": reason}, cache_file)
    return precision


def precision_of(network: keras.Model) -> str:
    """bfloat16 where any of the network's layers computes in it (an in_precision copy), else float32."""
    dtypes = {layer.compute_dtype for layer in network._flatten_layers()}
    return "bfloat16" if "bfloat16" in dtypes else "float32"


BFLOAT16_LAYERS = ("Conv2D", "MaxPooling2D")
"""The Keras layer classes (by name) that compute in bfloat16 in the bfloat16 copy."""


def _policy_clone(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh copy of one layer: convolutions and their max-pooling under mixed_bfloat16 (where the time goes),
    everything after them (global pooling, normalization, the head, the output) in float32, which costs
    nothing and keeps the compared probability as close to float32's as the features allow."""
    import keras

    config = layer.get_config()
    if not isinstance(layer, keras.layers.InputLayer):
        reduced = tuple(getattr(keras.layers, name) for name in BFLOAT16_LAYERS)
        config["dtype"] = "mixed_bfloat16" if isinstance(layer, reduced) else "float32"
    return layer.__class__.from_config(config)


def in_precision(model: keras.Model, precision: str) -> keras.Model:
    """The model itself for float32; for bfloat16 a copy with the same weights computing in bfloat16."""
    if precision == "float32":
        return model
    if precision != "bfloat16":
        raise ValueError(f"cannot build a {precision!r} network; use float32 or bfloat16")
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        copy = keras.models.clone_model(model, clone_function=_policy_clone, recursive=True)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    for layer in copy._flatten_layers():
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # its mean and variance tensors are derived from the weights just set
    return copy
