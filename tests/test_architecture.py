import io
import json
import socket
from pathlib import Path

import keras
import numpy as np
import pytest

from model.architecture import (
    ALL_PARTS,
    IMAGENET_NOTOP_URL,
    WeightsUnavailable,
    build_base,
    build_config_base,
    build_head,
    compile_model,
    feature_columns,
    head_of,
    imagenet_weights_path,
    resolve_weights,
)
from model.config import OPTIMIZERS, REFERENCE, ModelConfig
from tests.models import build_model

SMALL = ModelConfig(input_size=32, weights="none", dense=(8,), learning_rate=0.1)


def _batch(size: int = 32, n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(-120, 140, (n, size, size, 3)).astype("float32"), np.array([[0], [1]] * (n // 2), "float32")


def _weights(layer: keras.layers.Layer) -> list[np.ndarray]:
    return [np.array(w) for w in layer.get_weights()]


def _changed(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.fixture(scope="module")
def reference() -> keras.Model:
    return build_model(ModelConfig(weights="none"))


def test_reference_model_has_the_seed_design(reference):
    assert REFERENCE == ModelConfig(weights="imagenet")
    assert reference.count_params() == 48_795_457
    assert [layer.name for layer in reference.layers] == ["img_input", "vgg16", "flatten", "fc1", "fc2", "preds"]
    assert reference.input_shape == (None, 256, 256, 3) and reference.output_shape == (None, 1)
    assert reference.get_layer("vgg16").output_shape == (None, 8, 8, 512)
    assert [reference.get_layer(n).units for n in ("fc1", "fc2", "preds")] == [1024, 512, 1]
    assert not reference.get_layer("vgg16").trainable


@pytest.mark.parametrize(
    ("changes", "layers"),
    [
        ({"pooling": "avg"}, ["img_input", "vgg16", "normalize", "fc1", "preds"]),
        ({"dropout": 0.3}, ["img_input", "vgg16", "flatten", "fc1", "dropout1", "preds"]),
        ({"dense": (16, 8, 4), "dropout": 0.5, "pooling": "avg"},
         ["img_input", "vgg16", "normalize", "fc1", "dropout1", "fc2", "dropout2", "fc3", "dropout3", "preds"]),
        ({"dense": ()}, ["img_input", "vgg16", "flatten", "preds"]),
        ({"head": "logistic", "pooling": "avgmax", "feature_layers": ("block3", "block4"), "l2": 0.01},
         ["img_input", "vgg16", "normalize", "preds"]),
    ],
)
def test_head_variants_build_the_expected_layers(changes, layers):
    config = ModelConfig(**{**SMALL.to_dict(), **changes})
    model = build_model(config)
    assert [layer.name for layer in model.layers] == layers
    assert [model.get_layer(f"fc{i}").units for i in range(1, len(config.hidden) + 1)] == list(config.hidden)
    for name in layers:
        if name.startswith("dropout"):
            assert model.get_layer(name).rate == config.dropout
    assert model.predict(_batch()[0], verbose=0).shape == (4, 1)


def test_head_of_shares_weights_with_the_model():
    model = build_model(SMALL)
    head = head_of(model)
    assert [layer.name for layer in head.layers] == ["features", "flatten", "fc1", "preds"]
    images, labels = _batch()
    features = model.get_layer("vgg16").predict(images, verbose=0)
    np.testing.assert_allclose(head.predict(features, verbose=0), model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)

    before = _weights(model.get_layer("fc1"))
    compile_model(head, "sgd", 0.1)
    rng = np.random.default_rng(1)
    head.train_on_batch(rng.normal(size=features.shape).astype("float32") * 10, labels)
    assert _changed(before, _weights(model.get_layer("fc1")))


@pytest.mark.parametrize("trainable_base", [False, True])
def test_fit_step_changes_the_base_only_when_trainable(trainable_base):
    model = compile_model(build_model(SMALL, trainable_base=trainable_base), "sgd", 0.1)
    base_before, head_before = _weights(model.get_layer("vgg16")), _weights(model.get_layer("fc1"))
    model.fit(*_batch(), batch_size=4, epochs=1, verbose=0)
    assert _changed(base_before, _weights(model.get_layer("vgg16"))) == trainable_base
    assert _changed(head_before, _weights(model.get_layer("fc1")))


def test_every_optimizer_compiles_and_trains():
    model = build_head((1, 1, 512), SMALL)
    labels = _batch()[1]
    images = np.random.default_rng(2).uniform(0, 5, (len(labels), 1, 1, 512)).astype("float32")
    initial = model.get_weights()
    for name in OPTIMIZERS:
        model.set_weights(initial)
        before = _weights(model.get_layer("fc1"))
        compile_model(model, name, 0.01)
        logs = model.train_on_batch(images, labels, return_dict=True)
        assert set(logs) >= {"loss", "accuracy", "auc", "precision", "recall", "f1"}, name
        assert np.isfinite(logs["loss"]), name
        assert _changed(before, _weights(model.get_layer("fc1"))), name
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        compile_model(model, "adagrad", 0.01)


def test_random_base_is_reproducible_from_its_seed():
    first, again, other = (build_base(32, "none", seed) for seed in (3, 3, 4))
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _changed(first.get_weights(), other.get_weights())
    assert first.name == "vgg16"


def test_unreachable_imagenet_download_fails_fast_and_names_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable) as raised:
        imagenet_weights_path(url="http://127.0.0.1:9/x.h5")
    message = str(raised.value)
    assert "127.0.0.1" in message and "--weights none" in message
    assert "python -m model.offline_weights" in message
    assert not (tmp_path / "models" / "x.h5").exists()


def test_a_download_of_the_imagenet_weights_goes_into_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: io.BytesIO())
    asked = {}

    def get_file(fname, origin, cache_subdir, cache_dir, file_hash):
        asked.update(origin=origin, folder=Path(cache_dir) / cache_subdir)
        return str(Path(cache_dir) / cache_subdir / fname)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    fname = IMAGENET_NOTOP_URL.rsplit("/", 1)[-1]
    assert imagenet_weights_path() == str(tmp_path / "models" / fname)
    assert asked == {"origin": IMAGENET_NOTOP_URL, "folder": tmp_path / "models"}


def test_cached_imagenet_weights_are_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / IMAGENET_NOTOP_URL.rsplit("/", 1)[-1]
    cached.parent.mkdir()
    cached.write_bytes(b"stand-in")
    assert imagenet_weights_path() == str(cached)
    assert resolve_weights("imagenet") == str(cached)


def test_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist.*--weights none"):
        build_base(32, str(tmp_path / "absent.weights.h5"))
    assert resolve_weights("none") is None


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_a_file_that_is_not_vgg16_weights_is_refused(tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save_weights(other)
    for path in (junk, other):
        with pytest.raises(WeightsUnavailable, match="is not a VGG-16 no-top weights file"):
            build_base(32, str(path))


def test_saved_vgg16_weights_load_at_another_input_size(tmp_path):
    path = tmp_path / "base.weights.h5"
    saved = build_base(32, "none", seed=7)
    saved.save_weights(path)
    loaded = build_base(64, str(path), seed=8)
    for a, b in zip(saved.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_size", 16, "input_size must be at least 32"),
        ("pooling", "median", "pooling must be one of"),
        ("optimizer", "adagrad", "optimizer must be one of"),
        ("dropout", 1.0, "dropout must be in"),
        ("dropout", -0.1, "dropout must be in"),
        ("learning_rate", 0, "learning_rate must be positive"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


def test_config_round_trips_through_dict_and_json():
    config = ModelConfig(input_size=64, weights="none", pooling="avg", dense=[32, 16], dropout=0.2,
                         optimizer="adam", learning_rate=1e-3, class_weight=True, seed=9)
    assert config.dense == (32, 16)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig.from_dict({**config.to_dict(), "unknown_key": 1}) == config


@pytest.mark.parametrize(("pooling", "layers", "width"), [
    ("avg", ("block4",), 512), ("max", ("block5",), 512), ("avgmax", ("block3", "block4", "block5"), 2 * 1280),
])
def test_pooled_bases_concatenate_the_blocks_they_read(pooling, layers, width):
    config = ModelConfig(**{**SMALL.to_dict(), "pooling": pooling, "feature_layers": layers})
    base = build_config_base(config)
    assert base.name == "vgg16" and base.output_shape == (None, width)
    deepest = max(int(b[-1]) for b in layers)
    assert not any(layer.name.startswith(f"block{deepest + 1}") for layer in base.layers)


def test_pooled_features_are_slices_of_the_all_parts_base():
    images = _batch()[0]
    everything = build_base(32, "none", 0, ALL_PARTS).predict(images, verbose=0)
    config = ModelConfig(**{**SMALL.to_dict(), "pooling": "max", "feature_layers": ("block4",)})
    np.testing.assert_allclose(everything[:, feature_columns(config)], build_config_base(config).predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)
