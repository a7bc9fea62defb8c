"""Whole classifiers for tests: the base and head a config describes, assembled as training would save them."""

from __future__ import annotations

import keras

from model.architecture import assemble, build_config_base, build_head
from model.config import ModelConfig


def build_model(config: ModelConfig, base: keras.Model | None = None, trainable_base: bool = False) -> keras.Model:
    """The full classifier for `config` (layers img_input, vgg16, flatten, fc1, fc2, preds for the reference)."""
    base = base if base is not None else build_config_base(config)
    return assemble(base, build_head(tuple(base.output_shape[1:]), config), trainable_base)
