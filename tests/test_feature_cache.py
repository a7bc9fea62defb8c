"""The feature cache holds what was asked for: augmented views per seed, the gate's features per preprocessing."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from model.card import new_card
from model.config import ModelConfig
from model.features import base_key, extract_features
from model.training.gate_fit import Item, features_of
from tests.models import build_model


def films(fixture_dir) -> list:
    return sorted((fixture_dir / "covid").iterdir())[:2]


def test_augmented_views_are_cached_per_seed(fixture_dir, tmp_path):
    inputs = keras.Input((16, 16, 3))
    base = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
    paths, key = films(fixture_dir), base_key(base)
    fresh = {seed: extract_features(base, paths, key, views=1, cache_dir=None, seed=seed)[0] for seed in (1, 2)}
    assert not np.allclose(fresh[1][:, 1], fresh[2][:, 1]), "two seeds must augment differently to tell them apart"
    for seed in (1, 2):
        cached, _ = extract_features(base, paths, key, views=1, cache_dir=tmp_path, seed=seed)
        np.testing.assert_allclose(cached, fresh[seed], rtol=1e-5, err_msg=f"seed {seed} read another seed's views")


def test_the_gates_features_are_cached_per_preprocessing_of_the_same_network(fixture_dir, tmp_path):
    plain = ModelConfig(weights="none", input_size=32, pooling="avg", dense=(4,))
    model = build_model(plain)
    items = [Item(path, "in_scope", path.name, "covid") for path in films(fixture_dir)]
    cards = {name: new_card(config, 0.5, "fixed", {}, {})
             for name, config in (("plain", plain), ("equalized", dataclasses.replace(plain, equalize="global")))}
    fresh = {name: features_of(model, card, items, 0, cache_dir=None)[0] for name, card in cards.items()}
    assert not np.allclose(fresh["plain"], fresh["equalized"]), "equalizing must change the gate's features"
    for name, card in cards.items():
        cached, _ = features_of(model, card, items, 0, cache_dir=tmp_path)
        np.testing.assert_allclose(cached, fresh[name], rtol=1e-5, err_msg=f"the {name} gate read other features")
