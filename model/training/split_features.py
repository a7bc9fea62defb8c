"""The features a training run starts from: each part of a split through the base a config describes."""

from __future__ import annotations

from pathlib import Path

from model.architecture import build_config_base
from model.config import ModelConfig
from model.data import Split
from model.features import DEFAULT_CACHE, SplitFeatures, featurizer


def prepare(split: Split, config: ModelConfig, views: int = 2, cache_dir: Path | None = DEFAULT_CACHE,
            precision: str = "float32") -> tuple[object, SplitFeatures]:
    """The base a model of `config` runs, and the features of each part of the split (views for training only).

    Features come from the cache of every pooled block (or block 5's map) under the config's preprocessing,
    sliced to the blocks and pooling the config reads, computed in `precision`; the base returned is float32.
    """
    features = featurizer(config, cache_dir, precision)
    sets = SplitFeatures(features(split.train, views), features(split.validation), features(split.test))
    return build_config_base(config), sets
