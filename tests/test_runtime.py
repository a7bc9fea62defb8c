"""The engine table: an artifact's network is loaded and run by the engine named, and another engine is one row."""

from __future__ import annotations

import numpy as np
import pytest

from model.serving.predictor import load_predictor
from model.serving.runtime import ENGINES, Engine, engine
from tests.server import add_gate, make_model

GREY = np.tile(np.arange(64, dtype=np.uint8), (64, 1))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A small artifact whose card records an input gate over 4 features."""
    return add_gate(make_model(tmp_path_factory.mktemp("model")), width=4)


def fixed_engine(calls: list, width: int = 4) -> Engine:
    """An engine whose network is a name; bfloat16 answers 0.52, float32 0.42, and the gate gets `width` zeros."""
    def run(network, precision):
        def forward(batch):
            calls.append((network, precision, len(batch)))
            p = 0.52 if precision == "bfloat16" else 0.42
            return np.full(len(batch), p), np.zeros((len(batch), 2, 2)), np.zeros((len(batch), width))
        return forward

    return Engine(load=lambda path: f"network of {path.name}", runtime=run, precisions=("float32", "bfloat16"),
                  gate_width=lambda network: width)


def test_an_unknown_engine_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown engine 'onnx'; known: keras"):
        engine("onnx")


def test_another_engine_is_one_row_that_loads_the_artifacts_network_and_answers(artifact, monkeypatch):
    calls = []
    monkeypatch.setitem(ENGINES, "fake", fixed_engine(calls))
    predictor = load_predictor(artifact, "bfloat16", engine_name="fake")
    answer = predictor.predict(GREY)
    # bfloat16's 0.52 lies within the margin of the card's 0.5, so the engine's exact precision answers
    assert (answer.probability, answer.precision, answer.positive, answer.status) == (0.42, "float32", False,
                                                                                      "answered")
    assert calls == [("network of model.keras", "bfloat16", 1), ("network of model.keras", "float32", 1)]


def test_an_engines_network_is_checked_against_the_artifacts_gate(artifact, monkeypatch):
    monkeypatch.setitem(ENGINES, "fake", fixed_engine([], width=3))
    with pytest.raises(ValueError, match="gate over 4 features, but this network gives it 3"):
        load_predictor(artifact, "float32", engine_name="fake")


def test_a_precision_the_engine_does_not_run_is_refused(artifact, monkeypatch):
    monkeypatch.setitem(ENGINES, "fake", Engine(load=str, runtime=lambda network, precision: None,
                                                precisions=("float32",), gate_width=lambda network: 4))
    with pytest.raises(ValueError, match="the fake engine runs float32, not bfloat16"):
        load_predictor(artifact, "bfloat16", engine_name="fake")
