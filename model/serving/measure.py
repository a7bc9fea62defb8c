"""How serving runs on this CPU, by measurement: the precision (`auto`) and the largest batch that pays.

CPU flags cannot tell where bfloat16 pays (with the same AVX512-BF16 flag it ran 2x faster on one CPU and
0.7x on another), nor whether batching does (batch 8 was 1.3x faster per image than batch 1 on one CPU and
4% faster on another), so at start-up the predictor's own runtimes are timed on the shipped example films at
batch 1 and at the batcher's largest batch. bfloat16 is chosen only when it is faster by MARGIN at both
and gives every example the same answer (decision and input-gate status, after the near-threshold float32
recompute); otherwise float32. In the chosen precision, concurrent predictions are served up to the largest
batch only when it is faster per image by MARGIN; else one at a time, so that a prediction never waits behind a
long pass that buys no speed. The figures and the choice are logged and cached per CPU model, model and gate
version, requested precision and batch size (XRAY_PRECISION_CACHE, settings.precision_cache), so a
restart reuses them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from model.precision import MARGIN, cache_choice, cached_choice, cpu_model, example_greys, ms_per_image
from model.preprocessing import preprocessing_of, to_network_input
from model.serving.network import on_network_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Serving:
    """What the measurement chose: the precision, the largest batch of concurrent predictions, and why."""

    precision: str
    batch_size: int
    reason: str


def _answers(predictor, greys: list[np.ndarray]) -> list[tuple[str, str]]:
    return [(p.status, p.label) for p in predictor.predict_greys(greys)]


def measure(predictors: dict, greys: list[np.ndarray], batch: int) -> dict:
    """ms per image of each predictor (by precision name) at batch 1 and `batch`, and whether every example gets
    the same answer from all of them. Each timing runs whole on the network thread (model.serving.network), so a
    model loaded while the server answers is never timed beside a serving pass (one such timing read 281 ms per
    image against 91 ms idle)."""
    any_predictor = next(iter(predictors.values()))
    one = np.stack([to_network_input(greys[0], preprocessing_of(any_predictor.card.config))])
    many = np.repeat(one, batch, axis=0)
    figures = {name: {str(n): on_network_thread(ms_per_image, predictor.run, x) for n, x in ((1, one), (batch, many))}
               for name, predictor in predictors.items()}
    answers = [on_network_thread(_answers, predictor, greys) for predictor in predictors.values()]
    return {"ms_per_image": figures, "same_answers": all(a == answers[0] for a in answers)}


def _precision(figures: dict, same_answers: bool, margin: float) -> tuple[str, str]:
    if set(figures) != {"float32", "bfloat16"}:
        return next(iter(figures)), "requested"
    f32, bf16 = figures["float32"], figures["bfloat16"]
    if not same_answers:
        return "float32", "auto: bfloat16 changed an example's answer"
    speedup = min(f32[n] / bf16[n] for n in f32)
    if speedup >= margin:
        return "bfloat16", f"auto: bfloat16 is faster by {speedup:.2f}x or more"
    return "float32", f"auto: bfloat16 is not {margin:.2f}x faster at every batch size"


def decide(result: dict, margin: float = MARGIN) -> Serving:
    """The precision and batch size measure()'s result calls for."""
    figures = result["ms_per_image"]
    precision, why = _precision(figures, result["same_answers"], margin)
    times = figures[precision]
    single, largest = "1", max(times, key=int)
    batch = int(largest) if times[single] / times[largest] >= margin else 1
    shown = "; ".join(f"{name}: " + ", ".join(f"batch {n} {ms:.0f} ms" for n, ms in per.items())
                      for name, per in figures.items())
    paying = "pays" if batch > 1 else f"is not {margin:.2f}x faster per image"
    return Serving(precision, batch, f"measured per image ({shown}); {why}; batch {largest} {paying}")


def _key(card, requested: str, batch: int) -> str:
    return f"{cpu_model()}|{card.version}|{(card.gate or {}).get('version', '')}|{requested}|{batch}"


def measured_serving(make: Callable[[str], object], card, requested: str, batch: int,
                     cache_file: Path | None = None) -> Serving:
    """How to serve this model on this CPU: from the cache, else measured and cached. `requested` is `auto`
    (both precisions timed) or a precision (only its batch size measured); `make(precision)` builds the
    predictor in that precision; the cache is `cache_file`, else the configured one."""
    key = _key(card, requested, batch)
    cached = cached_choice(key, cache_file)
    if cached:
        serving = Serving(**cached)
        log.info("precision %s, batch %d (%s; cached for %s)", serving.precision, serving.batch_size,
                 serving.reason, cpu_model())
        return serving
    greys = example_greys()
    if not greys:
        precision = "float32" if requested == "auto" else requested
        log.info("precision %s, batch 1 (no example films to measure on)", precision)
        return Serving(precision, 1, "no example films to measure on")
    precisions = ("bfloat16", "float32") if requested == "auto" else (requested,)
    serving = decide(measure({p: make(p) for p in precisions}, greys, batch))
    log.info("precision %s, batch %d (%s)", serving.precision, serving.batch_size, serving.reason)
    cache_choice(key, asdict(serving), cache_file)
    return serving
