"""Run the frozen VGG-16 base once per image (and per stored augmented view), cached on disk by content hash."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import settings
from model.config import ModelConfig
from model.data import Example
from model.images import ImageError, load_bytes, read_grey
from model.preprocessing import Preprocessing, to_network_input
from model.progress import Progress

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("$XRAY_FEATURE_CACHE")
"""Stands for the configured feature cache (settings.feature_cache()), looked up each time features are read; a
cache_dir of None reads and writes no cache."""


def base_key(base, preprocessing: Preprocessing | None = None, precision: str = "float32") -> str:
    """Names what a base computes on what input: a hash of its weights, its output shape, the preprocessing
    and the precision it runs in (float32 keys carry no precision suffix).

    A trained frozen-base model and the weights file it started from therefore share cached features.
    """
    digest = hashlib.sha256()
    for array in base.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    output = "x".join(str(int(d)) for d in base.output_shape[1:])
    prep = preprocessing or Preprocessing(int(base.input_shape[1]))
    suffix = "" if precision == "float32" else f"-{precision}"
    return f"vgg16-{digest.hexdigest()[:16]}-out{output}-{prep.key}{suffix}"


def _view_pixels(data: bytes, view: int, digest: str, preprocessing: Preprocessing, seed: int) -> np.ndarray:
    grey = read_grey(data)
    if view > 0:
        from model.augment import augment

        rng = np.random.default_rng([int(digest[:15], 16), view, seed])
        if preprocessing.framed_views:
            from model.framing import random_framing

            grey = random_framing(grey, rng)
        grey = augment(grey, rng)
    return to_network_input(grey, preprocessing)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _load(path: Path) -> np.ndarray | None:
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError):
        return None


def _compute(base, todo: list, paths: Sequence[Path], seed: int, batch_size: int,
             found: dict[tuple[int, int], np.ndarray], preprocessing: Preprocessing) -> set[int]:
    """Run the base on the uncached views in batches, caching each; the indices of files that failed to decode."""
    failed: set[int] = set()
    progress = Progress("base features", len(todo))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch, pixels = [], []
        for i, view, data, digest, cached in chunk:
            try:
                pixels.append(_view_pixels(data, view, digest, preprocessing, seed))
                batch.append((i, view, cached))
            except ImageError as error:
                if i not in failed:
                    log.warning("skipping %s: %s", paths[i], error)
                failed.add(i)
        if pixels:
            outputs = np.asarray(base.predict_on_batch(np.stack(pixels)), dtype="float32")
            for (i, view, cached), array in zip(batch, outputs):
                found[i, view] = array
                if cached is not None:
                    _save_atomic(cached, array)
        progress.advance(len(chunk))
    return failed


def resolved_precision(base, precision: str = "float32") -> str:
    """float32 or bfloat16 for the frozen base: `precision` itself, or for `auto` the faster on this CPU, timed on
    the example films once per CPU model and base weights and cached (model.precision.measured_precision)."""
    if precision != "auto":
        return precision
    from model.precision import MEASURE_BATCH, example_greys, measured_precision

    plain = Preprocessing(int(base.input_shape[1]))
    greys = example_greys()[:MEASURE_BATCH] or [np.random.default_rng(0).integers(0, 256, (256, 256), np.uint8)]
    inputs = np.stack([to_network_input(grey, plain) for grey in greys])
    return measured_precision(base, inputs, base_key(base, plain))


def feature_network(base, precision: str = "float32", preprocessing: Preprocessing | None = None) -> tuple[object, str]:
    """The frozen base as it runs in `precision` (`auto`: see resolved_precision) and its feature cache key."""
    from model.precision import in_precision

    precision = resolved_precision(base, precision)
    return in_precision(base, precision), base_key(base, preprocessing, precision)


def extract_features(
    base,
    paths: Sequence[Path],
    key: str,
    views: int = 0,
    cache_dir: Path | None = DEFAULT_CACHE,
    seed: int = 0,
    batch_size: int = 16,
    preprocessing: Preprocessing | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Features of shape (n_kept, views + 1, *base_output) and the indices of the paths that loaded.

    View 0 is the clean image; views 1..`views` are seeded augmentations. Unusable files are reported and skipped.
    `base` runs in whatever precision it was built in (see feature_network); progress is logged as it goes.
    """
    preprocessing = preprocessing or Preprocessing(int(base.input_shape[1]))
    cache_dir = settings.feature_cache() if cache_dir == DEFAULT_CACHE else cache_dir
    shape = tuple(int(d) for d in base.output_shape[1:])
    found: dict[tuple[int, int], np.ndarray] = {}
    todo: list[tuple[int, int, bytes, str, Path | None]] = []
    kept: list[int] = []
    for i, path in enumerate(paths):
        try:
            data = load_bytes(path)
        except ImageError as error:
            log.warning("skipping %s: %s", path, error)
            continue
        digest = hashlib.sha256(data).hexdigest()
        kept.append(i)
        for view in range(views + 1):
            cached = cache_dir / key / f"{digest}_v{view}_s{seed if view else 0}.npy" if cache_dir else None
            array = _load(cached) if cached and cached.is_file() else None
            if array is not None and array.shape == shape:
                found[i, view] = array
            else:
                todo.append((i, view, data, digest, cached))
    if todo:
        log.info("computing %d base features (%d cached) with %s", len(todo), len(found), key)
    failed = _compute(base, todo, paths, seed, batch_size, found, preprocessing)
    kept = [i for i in kept if i not in failed]
    features = np.zeros((len(kept), views + 1, *shape), dtype="float32")
    for row, i in enumerate(kept):
        for view in range(views + 1):
            features[row, view] = found[i, view]
    return features, kept


@dataclass
class Features:
    """Base features of some examples: x is (n, views + 1, *feature_shape), view 0 being the clean image, computed
    in `precision`."""

    x: np.ndarray
    y: np.ndarray
    examples: list[Example]
    skipped: list[Path] = field(default_factory=list)
    precision: str = "float32"

    def clean(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[:, 0], self.y.reshape(-1, 1)

    def first_view(self) -> "Features":
        """The same examples with their clean view only."""
        return Features(self.x[:, :1], self.y, self.examples, self.skipped, self.precision)

    def all_views(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored view as its own training sample."""
        views = self.x.shape[1]
        return self.x.reshape(-1, *self.x.shape[2:]), np.repeat(self.y, views).reshape(-1, 1)

    def columns(self, columns: np.ndarray | None) -> "Features":
        """The same examples with only these feature columns (of pooled vectors); None keeps everything."""
        if columns is None:
            return self
        return Features(self.x[..., columns], self.y, self.examples, self.skipped, self.precision)

    def take(self, indices: Sequence[int]) -> "Features":
        indices = np.asarray(indices, dtype=int)
        return Features(self.x[indices], self.y[indices], [self.examples[i] for i in indices],
                        precision=self.precision)

    def __add__(self, other: "Features") -> "Features":
        views = min(self.x.shape[1], other.x.shape[1])
        x = np.concatenate([self.x[:, :views], other.x[:, :views]])
        return Features(x, np.concatenate([self.y, other.y]), self.examples + other.examples,
                        self.skipped + other.skipped, self.precision)


@dataclass
class SplitFeatures:
    """Features of the train, validation and test parts of one split (augmented views for train only)."""

    train: Features
    validation: Features
    test: Features

    def parts(self) -> dict[str, Features]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    @property
    def skipped(self) -> list[Path]:
        return [path for part in self.parts().values() for path in part.skipped]

    def columns(self, columns: np.ndarray | None) -> "SplitFeatures":
        return SplitFeatures(**{name: part.columns(columns) for name, part in self.parts().items()})


def featurize(
    base, key: str, examples: Sequence[Example], views: int = 0, cache_dir: Path | None = DEFAULT_CACHE, seed: int = 0,
    preprocessing: Preprocessing | None = None,
) -> Features:
    """Run (or read from the cache) the frozen base on examples; unusable files are reported and dropped."""
    x, kept = extract_features(base, [e.path for e in examples], key, views, cache_dir, seed,
                               preprocessing=preprocessing)
    kept_examples = [examples[i] for i in kept]
    loaded = set(kept)
    skipped = [e.path for i, e in enumerate(examples) if i not in loaded]
    from model.precision import precision_of

    return Features(x, np.array([e.label for e in kept_examples], dtype="float32"), kept_examples, skipped,
                    precision_of(base))


def extractor_for(config: ModelConfig):
    """The base whose cached features serve `config`: every pooled block (sliced per config), or block 5's map."""
    from model.architecture import ALL_PARTS, build_base

    parts = None if config.pooling == "flatten" else ALL_PARTS
    return build_base(config.input_size, config.weights, config.seed, parts)


def columns_for(config: ModelConfig) -> np.ndarray | None:
    """Which columns of extractor_for(config)'s features the config reads (None: all of block 5's map)."""
    from model.architecture import feature_columns

    return None if config.pooling == "flatten" else feature_columns(config)


def featurizer(config: ModelConfig, cache_dir: Path | None = DEFAULT_CACHE, precision: str = "float32",
               sliced: bool = True) -> Callable[[Sequence[Example], int], Features]:
    """A function from (examples, views) to their features for `config`: its preprocessing, its blocks, in
    `precision`, cached. Unsliced, pooled features keep every block and pooling (as the tuner's bank does)."""
    from model.preprocessing import preprocessing_of

    preprocessing = preprocessing_of(config)
    extractor, key = feature_network(extractor_for(config), precision, preprocessing)
    columns = columns_for(config) if sliced else None

    def features(examples: Sequence[Example], views: int = 0) -> Features:
        return featurize(extractor, key, examples, views, cache_dir, config.seed, preprocessing).columns(columns)

    return features
