"""Build and compile the VGG-16 base + dense head classifier from a ModelConfig."""

from __future__ import annotations

import functools
import socket
import urllib.parse
from pathlib import Path

import keras
import numpy as np

import settings
from model.config import BLOCKS, ModelConfig

IMAGENET_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
IMAGENET_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"
BASE_NAME = "vgg16"
ALL_PARTS = tuple((block, pool) for block in BLOCKS for pool in ("avg", "max"))
POOLS = {"avg": ("avg",), "max": ("max",), "avgmax": ("avg", "max")}
BLOCK_CHANNELS = {"block3": 256, "block4": 512, "block5": 512}
GLOBAL_POOLS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
# Frozen-base features are large (HED's block5_pool vectors have a norm near 2,400, about ten times ImageNet's):
# unclipped SGD at lr 0.01 on the flattened 32,768 features diverged to a NaN loss in the first epochs.
CLIPNORM = 1.0


OPTIMIZER_CONSTRUCTORS = {
    "sgd": keras.optimizers.SGD,
    "sgd_momentum": functools.partial(keras.optimizers.SGD, momentum=0.9, nesterov=True),
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}


class WeightsUnavailable(RuntimeError):
    """The requested base weights cannot be had; the message names the alternatives."""


def _alternatives() -> str:
    return (
        "Alternatives: --weights none (random base, for tests), or --weights PATH to a VGG-16 no-top "
        "weights file, e.g. one made offline by `python -m model.offline_weights --out weights/vgg16_hed_notop.weights.h5`, "
        "or copy vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models/ by hand."
    )


def imagenet_weights_path(url: str = IMAGENET_NOTOP_URL, timeout: float = 10.0) -> str:
    """The Keras ImageNet VGG-16 no-top weights file: from Keras' cache, else downloaded, else a quick clear error."""
    cache_dir = settings.keras_home()
    fname = url.rsplit("/", 1)[-1]
    cached = cache_dir / "models" / fname
    if cached.is_file():
        return str(cached)
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise WeightsUnavailable(
            f"ImageNet weights could not be downloaded from {parts.hostname} ({error}). " + _alternatives()
        ) from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout * 6)
    try:
        return keras.utils.get_file(fname, url, cache_subdir="models", cache_dir=str(cache_dir),
                                    file_hash=IMAGENET_NOTOP_MD5)
    except Exception as error:
        raise WeightsUnavailable(f"ImageNet weights download failed ({error}). " + _alternatives()) from None
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(weights: str) -> str | None:
    """Map 'imagenet' / 'none' / a path to what keras.applications.VGG16 accepts."""
    if weights in ("none", "None", "", None):
        return None
    if weights == "imagenet":
        return imagenet_weights_path()
    if not Path(weights).is_file():
        raise WeightsUnavailable(f"base weights file {weights} does not exist. " + _alternatives())
    return str(weights)


def build_base(input_size: int, weights: str, seed: int = 0,
               parts: tuple[tuple[str, str], ...] | None = None) -> keras.Model:
    """The VGG-16 convolutional base (no top) named 'vgg16', its block 5 map or the pooled `parts` as output.

    A random base is seeded, so it is reproducible.
    """
    path = resolve_weights(weights)
    keras.utils.set_random_seed(seed)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
    if path is not None:
        try:
            base.load_weights(path)
        except Exception as error:
            raise WeightsUnavailable(f"{path} is not a VGG-16 no-top weights file ({error}). " + _alternatives()) from None
    if parts is None:
        base.name = BASE_NAME
        return base
    return pooled_base(base, parts)


def pooled_parts(config: ModelConfig) -> tuple[tuple[str, str], ...] | None:
    """The (block, pooling) pairs a pooled config reads, in canonical order; None for flatten (block 5's map)."""
    if config.pooling == "flatten":
        return None
    return tuple((block, pool) for block in config.feature_layers for pool in POOLS[config.pooling])


def pooled_base(vgg: keras.Model, parts: tuple[tuple[str, str], ...]) -> keras.Model:
    """VGG-16's layers up to the deepest block read, each (block, pooling) pooled globally and concatenated."""
    pooled = []
    for block, pool in parts:
        layer = GLOBAL_POOLS[pool](name=f"{block}_{pool}")
        pooled.append(layer(vgg.get_layer(f"{block}_pool").output))
    output = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pooled")(pooled)
    return keras.Model(vgg.input, output, name=BASE_NAME)


def feature_columns(config: ModelConfig) -> np.ndarray:
    """Columns of the ALL_PARTS features (every block, avg and max) that a pooled config reads, in its order."""
    starts, offset = {}, 0
    for block, pool in ALL_PARTS:
        starts[block, pool] = offset
        offset += BLOCK_CHANNELS[block]
    return np.concatenate([np.arange(starts[p], starts[p] + BLOCK_CHANNELS[p[0]]) for p in pooled_parts(config)])


def build_config_base(config: ModelConfig) -> keras.Model:
    """The base a model of `config` runs: block 5's map, or the pooled blocks it reads."""
    return build_base(config.input_size, config.weights, config.seed, pooled_parts(config))


def build_head(feature_shape: tuple[int, ...], config: ModelConfig) -> keras.Model:
    """The head on the base's output: flatten a map, or normalize pooled vectors; dense layers; one sigmoid unit.

    The Normalization layer of a pooled head is adapted to the training features in fit (model.training.head).
    """
    features = keras.Input(shape=tuple(feature_shape), name="features")
    if len(feature_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(features)
    else:
        x = keras.layers.Normalization(name="normalize")(features)
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    for i, units in enumerate(config.hidden, start=1):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"fc{i}")(x)
        if config.dropout > 0:
            x = keras.layers.Dropout(config.dropout, name=f"dropout{i}")(x)
    if config.dropout > 0 and not config.hidden:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    preds = keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=regularizer, name="preds")(x)
    return keras.Model(features, preds, name="head")


def assemble(base: keras.Model, head: keras.Model, trainable_base: bool = False) -> keras.Model:
    """Image -> base -> the head's own layers; the head's weights are shared, not copied."""
    base.trainable = trainable_base
    size = base.input_shape[1]
    image = keras.Input(shape=(size, size, 3), name="img_input")
    x = base(image)
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(image, x, name="xray_covid")


def head_of(model: keras.Model) -> keras.Model:
    """A model from the base's feature map to the prediction, sharing the full model's head layers."""
    base = model.get_layer(BASE_NAME)
    features = keras.Input(shape=tuple(base.output_shape[1:]), name="features")
    x = features
    for layer in model.layers[model.layers.index(base) + 1:]:
        x = layer(x)
    return keras.Model(features, x, name="head")


GATE_GRID = 4
"""The input gate reads the Grad-CAM layer's map averaged on a GATE_GRID x GATE_GRID grid (where things are),
beside the base's output (what the head reads)."""


def last_conv(base: keras.Model) -> keras.layers.Layer:
    """The deepest convolution the base's output depends on (block5_conv3, or block4_conv3 for a block-4 head)."""
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    return convs[-1]


def gate_outputs(base: keras.Model):
    """(Grad-CAM map, base output, gate features) as tensors of the base's graph; the gate features are the map
    averaged on a GATE_GRID grid, flattened, beside the base output (a map is averaged over its positions)."""
    conv = last_conv(base).output
    pool = max(1, int(conv.shape[1]) // GATE_GRID)
    grid = keras.layers.Flatten(name="gate_grid")(keras.layers.AveragePooling2D(pool, name="gate_pool")(conv))
    pooled = base.output
    summary = keras.layers.GlobalAveragePooling2D(name="gate_avg")(pooled) if len(pooled.shape) == 4 else pooled
    gate = keras.layers.Concatenate(name="gate_features", dtype="float32")([grid, summary])
    return conv, pooled, gate


def gate_network(base: keras.Model) -> keras.Model:
    """The base's input to the gate features, for computing them on training images (in the base's precision)."""
    return keras.Model(base.input, gate_outputs(base)[2], name=f"{base.name}_gate")


def make_optimizer(name: str, learning_rate: float, clipnorm: float = CLIPNORM) -> keras.optimizers.Optimizer:
    """The named optimizer with its global gradient norm clipped (see CLIPNORM)."""
    if name not in OPTIMIZER_CONSTRUCTORS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_CONSTRUCTORS)}")
    return OPTIMIZER_CONSTRUCTORS[name](learning_rate=learning_rate, global_clipnorm=clipnorm)


def compile_model(model: keras.Model, optimizer: str, learning_rate: float) -> keras.Model:
    """Binary cross-entropy with accuracy, AUC, precision, recall and F1 (threshold 0.5) as training metrics.

    XLA is off: on a CPU it doubles the first step's set-up time for these small heads and changes nothing else.
    """
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.F1Score(average="micro", threshold=0.5, name="f1"),
        ],
        jit_compile=False,
    )
    return model
