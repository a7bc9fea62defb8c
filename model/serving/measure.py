"""`auto` precision by measurement: time the loaded model in float32 and bfloat16 and keep the faster.

CPU flags cannot tell where bfloat16 pays (with the same AVX512-BF16 flag it ran 2x faster on one CPU and
0.7x on another), so at start-up the predictor's own runtimes are timed on the shipped example films at
batch 1 and at the batcher's largest batch. bfloat16 is chosen only when it is faster by MARGIN at both
and gives every example the same answer (decision and input-gate status, after the near-threshold float32
recompute); otherwise float32. The figures and the choice are logged and cached per CPU model, model and
gate version and batch size (XRAY_PRECISION_CACHE, settings.precision_cache), so a restart reuses them.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

import settings
from model.images import EXTENSIONS, read_grey
from model.preprocessing import preprocessing_of, to_network_input

log = logging.getLogger(__name__)

MARGIN = 1.15
RUNS = 2
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo, else the platform's), what the cached choice is keyed by."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ms_per_image(run: Callable, inputs: np.ndarray) -> float:
    run(inputs)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        run(inputs)
        times.append((time.perf_counter() - start) * 1000 / len(inputs))
    return statistics.median(times)


def _answers(predictor, greys: list[np.ndarray]) -> list[tuple[str, str]]:
    return [(p.status, p.label) for p in predictor.predict_greys(greys)]


def measure(fast, exact, greys: list[np.ndarray], batch: int) -> dict:
    """ms per image of the bfloat16 predictor `fast` and the float32 `exact` at batch 1 and `batch`, and whether
    every example gets the same answer from both."""
    preprocessing = preprocessing_of(exact.card.config)
    one = np.stack([to_network_input(greys[0], preprocessing)])
    many = np.repeat(one, batch, axis=0)
    figures = {name: {str(n): _ms_per_image(predictor.run, x) for n, x in ((1, one), (batch, many))}
               for name, predictor in (("float32", exact), ("bfloat16", fast))}
    return {"ms_per_image": figures, "same_answers": _answers(fast, greys) == _answers(exact, greys)}


def decide(result: dict, margin: float = MARGIN) -> tuple[str, str]:
    """(precision, reason) from measure()'s result."""
    f32, bf16 = result["ms_per_image"]["float32"], result["ms_per_image"]["bfloat16"]
    speedups = {n: f32[n] / bf16[n] for n in f32}
    shown = ", ".join(f"batch {n}: float32 {f32[n]:.0f} ms, bfloat16 {bf16[n]:.0f} ms per image" for n in f32)
    if not result["same_answers"]:
        return "float32", f"auto, measured ({shown}): bfloat16 changed an example's answer"
    if all(s >= margin for s in speedups.values()):
        return "bfloat16", f"auto, measured ({shown}): bfloat16 is faster by {min(speedups.values()):.2f}x or more"
    return "float32", f"auto, measured ({shown}): bfloat16 is not {margin:.2f}x faster at every batch size"


def _key(card, batch: int) -> str:
    return f"{cpu_model()}|{card.version}|{(card.gate or {}).get('version', '')}|{batch}"


def measured_precision(make: Callable[[str], object], card, batch: int, cache_file: Path | None = None) -> str:
    """The precision `auto` picks for this model on this CPU: from the cache, else measured and cached.

    `make(precision)` builds the predictor in that precision; the cache is `cache_file`, else the configured one."""
    key = _key(card, batch)
    cache_file = settings.precision_cache() if cache_file is None else cache_file
    try:
        cached = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        log.info("precision %s (%s; cached for %s)", cached[key]["precision"], cached[key]["reason"], cpu_model())
        return cached[key]["precision"]
    films = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in EXTENSIONS) if EXAMPLES.is_dir() else []
    greys = [read_grey(p) for p in films]
    if not greys:
        log.info("precision float32 (auto: no example films to measure on)")
        return "float32"
    precision, reason = decide(measure(make("bfloat16"), make("float32"), greys, batch))
    log.info("precision %s (%s)", precision, reason)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps({**cached, key: {"precision": precision, "reason": reason}}, indent=2))
    except OSError as error:
        log.warning("precision choice not cached in %s: %s", cache_file, error)
    return precision

