"""Which floating-point precision runs the network: float32, or bfloat16 where the CPU computes it natively.

`auto` reads the CPU's flags from /proc/cpuinfo and picks bfloat16 only where it pays: with AMX (3.5x faster
than float32 on the shipped model). With AVX512-BF16 alone bfloat16 measured 0.7x float32 (slower:
benchmarks/bench_precision.py, README), so `auto` keeps float32 there and says so; XRAY_PRECISION=bfloat16 forces it.
The bfloat16 network is a copy of the float32 one whose convolutions and max-pooling run under Keras'
"mixed_bfloat16" policy (bfloat16 compute, float32 weights) and everything after them in float32, built in
its own scope so the global policy is left as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras

import settings

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "bfloat16")
AUTO_BF16_FLAGS = ("amx_bf16",)
SLOW_BF16_FLAGS = ("avx512_bf16",)
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in /proc/cpuinfo text (x86 `flags`, Arm `Features`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def choose(requested: str, flags: set[str]) -> tuple[str, str]:
    """(precision, reason) for a requested precision on a CPU with these flags."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested, f"{requested} as requested"
    found = [flag for flag in AUTO_BF16_FLAGS if flag in flags]
    if found:
        return "bfloat16", f"auto: the CPU reports {', '.join(found)}"
    slow = [flag for flag in SLOW_BF16_FLAGS if flag in flags]
    if slow:
        return "float32", f"auto: the CPU reports {', '.join(slow)} but not AMX, where bfloat16 ran slower than float32"
    return "float32", "auto: the CPU reports neither AMX nor AVX512-BF16"


def requested_precision(requested: str | None = None) -> str:
    """What was asked for: the argument, else $XRAY_PRECISION, else auto; ValueError for an unknown name."""
    requested = (requested or settings.precision()).strip().lower()
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    return requested


def resolve(requested: str | None = None, cpuinfo: Path = CPUINFO) -> str:
    """The precision to use (default: $XRAY_PRECISION, else auto, from the CPU's flags), with the reason logged.

    Serving measures instead (model/serving/measure.py): this is the choice where no model is loaded yet."""
    requested = requested_precision(requested)
    try:
        text = cpuinfo.read_text(errors="replace") if requested == "auto" else ""
    except OSError:
        text = ""
    precision, reason = choose(requested, cpu_flags(text))
    log.info("precision %s (%s)", precision, reason)
    return precision


BFLOAT16_LAYERS = (keras.layers.Conv2D, keras.layers.MaxPooling2D)


def _policy_clone(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh copy of one layer: convolutions and their max-pooling under mixed_bfloat16 (where the time goes),
    everything after them (global pooling, normalization, the head, the output) in float32, which costs
    nothing and keeps the compared probability as close to float32's as the features allow."""
    config = layer.get_config()
    if not isinstance(layer, keras.layers.InputLayer):
        config["dtype"] = "mixed_bfloat16" if isinstance(layer, BFLOAT16_LAYERS) else "float32"
    return layer.__class__.from_config(config)


def in_precision(model: keras.Model, precision: str) -> keras.Model:
    """The model itself for float32; for bfloat16 a copy with the same weights computing in bfloat16."""
    if precision == "float32":
        return model
    if precision != "bfloat16":
        raise ValueError(f"cannot build a {precision!r} network; use float32 or bfloat16")
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
