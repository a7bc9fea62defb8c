"""Precision: the CPU check behind `auto`, the bfloat16 network, and concurrent predictions served in batches."""

from __future__ import annotations

import json
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest

from model.config import ModelConfig
from model.images import ImageError
from model.precision import (
    MARGIN,
    choose_by_timing,
    in_precision,
    relative_difference,
    requested_precision,
)
from model.serving.batching import BatchingPredictor
from model.serving.predictor import Prediction, load_predictor
from tests.server import make_model

def test_auto_picks_bfloat16_for_a_base_only_when_timed_faster_and_computing_the_same():
    assert choose_by_timing({"float32": 92.8, "bfloat16": 47.0}, 0.004)[0] == "bfloat16"
    slower, why = choose_by_timing({"float32": 150.0, "bfloat16": 220.0}, 0.004)
    assert slower == "float32" and "0.68x float32" in why and "bfloat16 220.0 ms/image" in why
    assert choose_by_timing({"float32": 90.0, "bfloat16": 90.0 / MARGIN + 1}, 0.0)[0] == "float32"
    different, why = choose_by_timing({"float32": 92.8, "bfloat16": 47.0}, 0.05)
    assert different == "float32" and "differs by 0.050" in why


def test_relative_difference_is_the_worst_images_l2_error_over_its_norm():
    exact = np.array([[3.0, 4.0], [1.0, 0.0]])
    assert relative_difference(exact, exact) == 0.0
    assert relative_difference(exact, [[3.0, 4.5], [1.0, 0.0]]) == pytest.approx(0.5 / 5.0)
    assert relative_difference(exact, [[3.0, 4.0], [1.0, 0.2]]) == pytest.approx(0.2)


def test_a_requested_precision_is_kept_and_an_unknown_one_refused(monkeypatch):
    monkeypatch.setenv("XRAY_PRECISION", "BFloat16")
    assert requested_precision() == "bfloat16"
    assert requested_precision("float32") == "float32"
    monkeypatch.delenv("XRAY_PRECISION")
    assert requested_precision() == "auto"
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        requested_precision("float16")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model"), ModelConfig(weights="none", input_size=32, pooling="avg",
                                                                      dense=(8,)))


def test_bfloat16_network_leaves_the_global_policy_and_keeps_a_float32_sigmoid(tiny_model):
    model = keras.models.load_model(tiny_model / "model.keras", compile=False)
    copy = in_precision(model, "bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert copy.get_layer("vgg16").get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert copy.get_layer("preds").dtype_policy.name == "float32"
    assert in_precision(model, "float32") is model
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert copy(x).dtype.name == "float32"
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(model(x)), atol=0.03)


def test_each_precision_gives_probability_and_grad_cam_from_one_pass(tiny_model, fixture_dir):
    files = sorted(fixture_dir.glob("covid/*"))[:3]
    for precision in ("float32", "bfloat16"):
        predictor = dataclasses.replace(load_predictor(tiny_model, precision), exact=None)
        many = predictor.predict_many(files)
        assert [p.precision for p in many] == [precision] * 3
        for path, prediction in zip(files, many):
            single = predictor.predict(path)
            assert prediction.probability == pytest.approx(single.probability, abs=1e-2)
            assert prediction.heatmap.shape == single.heatmap.shape and 0 <= prediction.heatmap.min()
            assert prediction.heatmap.max() <= 1


def test_predict_many_returns_the_error_of_a_bad_file_in_its_place(tiny_model, fixture_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good = sorted(fixture_dir.glob("normal/*"))[0]
    results = load_predictor(tiny_model, "float32").predict_many([good, bad, good])
    assert isinstance(results[0], Prediction) and isinstance(results[1], ImageError)
    assert results[2].probability == results[0].probability


def test_concurrent_callers_share_batches_and_get_their_own_answers(tiny_model, fixture_dir, tmp_path):
    predictor = load_predictor(tiny_model, "float32")
    sizes: list[int] = []
    run = predictor.run
    predictor.run = lambda x: (sizes.append(len(x)), run(x))[1]
    batched = BatchingPredictor(predictor, max_batch_size=4)
    files = sorted(fixture_dir.glob("*/*.png"))[:12]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    start = threading.Barrier(len(files) + 1)

    def call(path: Path):
        start.wait()
        try:
            return batched.predict(path)
        except ImageError as error:
            return error

    with ThreadPoolExecutor(len(files) + 1) as pool:
        results = list(pool.map(call, [*files, bad]))
    assert isinstance(results[-1], ImageError)
    for path, result in zip(files, results):
        assert result.probability == pytest.approx(predictor.predict(path).probability, abs=1e-5)
    assert max(sizes[: len(sizes) - len(files)]) <= 4 and len(sizes) - len(files) < len(files)


def test_progress_line_gives_done_rate_and_time_left(caplog):
    from model.progress import Progress, duration

    now = [0.0]
    progress = Progress("base features", 100, every_s=10, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="model.progress"):
        now[0] = 5.0
        progress.advance(10)
        now[0] = 20.0
        progress.advance(30)
    assert [r.getMessage() for r in caplog.records] == ["base features: 40/100 images, 2.00/s, 30 s left"]
    assert duration(185) == "3 min 05 s" and duration(3720) == "1 h 02 min"


def test_a_long_job_logs_its_final_line_when_the_last_item_is_done_within_the_interval(caplog):
    from model.progress import Progress

    now = [0.0]
    progress = Progress("predict", 12, unit="files", every_s=60, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="model.progress"):
        for second in range(1, 13):
            now[0] = float(second)
            progress.advance()
    assert [r.getMessage() for r in caplog.records] == ["predict: 12/12 files, 1.00/s, 0 s left"]


def test_feature_cache_key_names_the_precision_and_keeps_float32_keys(tiny_model):
    from model.features import feature_network

    base = keras.models.load_model(tiny_model / "model.keras", compile=False).get_layer("vgg16")
    network, key = feature_network(base, "float32")
    bf16_network, bf16_key = feature_network(base, "bfloat16")
    assert network is base and key.endswith("-32px-crop0-harm0-eqnone")
    assert bf16_key == key + "-bfloat16"
    assert bf16_network.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert all(layer.compute_dtype == "float32" for layer in bf16_network.layers
               if not isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.InputLayer)))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_predict_command_takes_the_precision_flag(tiny_model, fixture_dir, precision, capsys):
    from model.predict import main

    files = [str(p) for p in sorted(fixture_dir.glob("normal/*"))[:3]]
    assert main([*files, "--model", str(tiny_model), "--precision", precision]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_the_answer_says_which_precision_computed_it():
    from space.presentation import served_in

    assert served_in("float32") == "Computed in float32."
    assert "bfloat16" in served_in("bfloat16") and "threshold was chosen in float32" in served_in("bfloat16")
    assert "Computed in float32 (the threshold was chosen in bfloat16;" in served_in("float32", "bfloat16")


def test_a_reduced_precision_answer_near_the_threshold_is_recomputed_in_float32():
    from model.card import new_card
    from model.config import ModelConfig
    from model.serving.predictor import MARGIN, Predictor

    card = new_card(ModelConfig(weights="none", input_size=32), 0.5, "fixed", {}, {})
    calls = []

    def runtime(probabilities):
        def run(batch):
            calls.append((probabilities, len(batch)))
            return np.array(probabilities[: len(batch)]), np.zeros((len(batch), 2, 2)), np.zeros((len(batch), 2))
        return run

    near, far = 0.5 + MARGIN / 2, 0.9
    predictor = Predictor(card, runtime([near, far]), "bfloat16", exact=runtime([0.49]))
    grey = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    first, second = predictor.predict_many([grey, grey])
    assert (first.probability, first.positive, first.precision) == (0.49, False, "float32")
    assert (second.probability, second.precision) == (far, "bfloat16")
    assert [n for _, n in calls] == [2, 1]


def test_a_reduced_precision_answer_near_the_gates_threshold_is_recomputed_in_float32():
    from model.card import new_card
    from model.config import ModelConfig
    from model.serving.predictor import Predictor
    from tests.test_gate import tiny_gate

    card = new_card(ModelConfig(weights="none", input_size=32), 0.5, "fixed", {}, {})
    gate = tiny_gate(threshold=0.5)

    def runtime(first_feature):
        def run(batch):
            features = np.array([[f, 0.0] for f in first_feature[: len(batch)]])
            return np.full(len(batch), 0.9), np.zeros((len(batch), 2, 2)), features
        return run

    predictor = Predictor(card, runtime([-0.01, 2.0]), "bfloat16", exact=runtime([0.02]), gate=gate)
    grey = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    near, far = predictor.predict_many([grey, grey])
    assert (near.status, near.precision, near.label) == ("answered", "float32", "COVID-19 positive")
    assert (far.status, far.precision) == ("answered", "bfloat16")


def test_a_reduced_precision_answer_near_the_gates_distance_threshold_is_recomputed_in_float32():
    from model.card import new_card
    from model.config import ModelConfig
    from model.serving.predictor import Predictor
    from tests.test_gate import tiny_gate

    card = new_card(ModelConfig(weights="none", input_size=32), 0.5, "fixed", {}, {})
    gate = tiny_gate(threshold=0.1, novelty_threshold=4.0)

    def runtime(second_feature):
        def run(batch):
            features = np.array([[2.0, f] for f in second_feature[: len(batch)]])
            return np.full(len(batch), 0.9), np.zeros((len(batch), 2, 2)), features
        return run

    # distances 2.01**2 = 4.04 (1% past the threshold 4) and 1.0: only the first is near enough to recompute
    predictor = Predictor(card, runtime([2.01, 1.0]), "bfloat16", exact=runtime([1.99]), gate=gate)
    grey = np.tile(np.arange(64, dtype=np.uint8), (64, 1))
    near, far = predictor.predict_many([grey, grey])
    assert (near.status, near.precision) == ("answered", "float32")
    assert (far.status, far.precision) == ("answered", "bfloat16")


def _measured(f32: tuple[float, float], bf16: tuple[float, float] | None = None, same: bool = True) -> dict:
    figures = {"float32": {"1": f32[0], "8": f32[1]}}
    if bf16:
        figures["bfloat16"] = {"1": bf16[0], "8": bf16[1]}
    return {"ms_per_image": figures, "same_answers": same}


def test_auto_picks_bfloat16_only_when_measured_faster_at_every_batch_and_answering_the_same():
    from model.serving.measure import MARGIN, decide

    assert decide(_measured((90, 86), (47, 38))).precision == "bfloat16"
    assert decide(_measured((90, 86), (47, 38), same=False)).precision == "float32"
    assert decide(_measured((90, 86), (47, 86 / MARGIN + 1))).precision == "float32"
    slower = decide(_measured((150, 115), (220, 210)))
    assert slower.precision == "float32" and "float32: batch 1 150 ms, batch 8 115 ms" in slower.reason


@dataclasses.dataclass(frozen=True)
class _Answer:
    status: str
    label: str


@dataclasses.dataclass
class Answering:
    """A predictor as measure() uses it: a card, a network run, and one (gate status, label) per film."""

    answers: list[tuple[str, str]]
    card: object = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros(len(batch))

    def predict_greys(self, greys: list[np.ndarray]) -> list:
        return [_Answer(*answer) for answer in self.answers]


def test_measure_finds_the_precisions_answering_alike_only_when_every_films_status_and_label_agree():
    from model.card import new_card
    from model.serving.measure import decide, measure

    card = new_card(ModelConfig(weights="none", input_size=32), 0.5, "fixed", {}, {})
    greys = [np.tile(np.arange(64, dtype=np.uint8), (64, 1))] * 2
    answers = [("answered", "COVID-19 positive"), ("answered", "COVID-19 negative")]
    alike = measure({"bfloat16": Answering(answers, card), "float32": Answering(answers, card)}, greys, 2)
    assert alike["same_answers"]
    for changed in ([("answered", "COVID-19 negative"), answers[1]], [answers[0], ("refused", "COVID-19 negative")]):
        result = measure({"bfloat16": Answering(changed, card), "float32": Answering(answers, card)}, greys, 2)
        assert not result["same_answers"] and decide(result).precision == "float32", changed


def cancelling_network(channels: tuple[float, float]) -> tuple[keras.Model, np.ndarray]:
    """A 1x1 convolution computing channel 0 - channel 1, and two 2x2 inputs holding `channels` everywhere."""
    inputs = keras.Input((2, 2, 2))
    conv = keras.layers.Conv2D(1, 1, use_bias=False)
    network = keras.Model(inputs, keras.layers.Flatten()(conv(inputs)))
    conv.set_weights([np.array([1.0, -1.0]).reshape(1, 1, 2, 1)])
    return network, np.broadcast_to(np.array(channels, "float32"), (2, 2, 2, 2)).copy()


def test_auto_keeps_float32_for_a_base_whose_bfloat16_copy_computes_something_else(tmp_path, monkeypatch):
    from model import precision

    # 1000 - 999 is 1 in float32; in bfloat16 (8 significant bits: steps of 4 between 512 and 1024) 999 rounds to
    # 1000 and the difference is 0, wrong by all of it. 3 - 2 is exact in both.
    for channels, expected in (((1000.0, 999.0), "float32"), ((3.0, 2.0), "bfloat16")):
        network, inputs = cancelling_network(channels)
        timed = iter([20.0, 10.0])  # float32 first, then bfloat16: twice as fast
        monkeypatch.setattr(precision, "ms_per_image", lambda run, x: next(timed))
        assert precision.measured_precision(network, inputs, f"cancel-{channels}", tmp_path / "p.json") == expected


def test_concurrent_predictions_are_batched_only_where_a_batch_is_faster_per_image():
    from model.serving.measure import decide

    assert decide(_measured((150, 115))).batch_size == 8, "1.30x faster per image at batch 8: batch"
    assert decide(_measured((1260, 1205))).batch_size == 1, "4% faster: one at a time, no long passes to wait on"
    assert decide(_measured((1260, 1205), (90, 50))).batch_size == 8, "judged in the chosen precision"
    assert "batch 8 is not 1.15x faster per image" in decide(_measured((100, 99))).reason


def test_the_measured_choice_is_cached_per_cpu_model_version_and_request_and_reused(tmp_path, monkeypatch):
    from model.card import new_card
    from model.config import ModelConfig
    from model.serving import measure

    card = new_card(ModelConfig(weights="none", input_size=32), 0.5, "fixed", {}, {})
    built = []
    monkeypatch.setattr(measure, "measure", lambda predictors, greys, batch: _measured(
        (90, 86), (47, 38) if "bfloat16" in predictors else None))
    cache = tmp_path / "precision.json"
    assert measure.measured_serving(built.append, card, "auto", 8, cache) == measure.decide(_measured((90, 86), (47, 38)))
    assert built == ["bfloat16", "float32"]
    assert measure.measured_serving(built.append, card, "auto", 8, cache).precision == "bfloat16"
    assert built == ["bfloat16", "float32"], "the cached choice was not reused"
    forced = measure.measured_serving(built.append, card, "float32", 8, cache)
    assert (forced.precision, forced.batch_size, built[2:]) == ("float32", 1, ["float32"])
    assert all(measure.cpu_model() in key for key in json.loads(cache.read_text()))


def test_a_server_measures_its_batch_size_unless_the_environment_sets_it(tiny_model, tmp_path, monkeypatch):
    from model.serving import measure

    monkeypatch.setenv("XRAY_PRECISION_CACHE", str(tmp_path / "precision.json"))
    monkeypatch.setattr(measure, "measure", lambda predictors, greys, batch: _measured((100, 50)))
    monkeypatch.delenv("XRAY_MAX_BATCH_SIZE", raising=False)
    assert load_predictor(tiny_model, "float32", serving=True).batch_size == 8
    monkeypatch.setenv("XRAY_MAX_BATCH_SIZE", "3")
    assert load_predictor(tiny_model, "float32", serving=True).batch_size == 3


def test_a_base_is_measured_once_per_cpu_and_weights_and_a_forced_precision_never(tiny_model, tmp_path, monkeypatch):
    from model import precision
    from model.features import base_key, resolved_precision

    monkeypatch.setenv("XRAY_PRECISION_CACHE", str(tmp_path / "precision.json"))
    base = keras.models.load_model(tiny_model / "model.keras", compile=False).get_layer("vgg16")
    timed = []
    real = precision.ms_per_image
    monkeypatch.setattr(precision, "ms_per_image", lambda run, x: timed.append(len(x)) or real(run, x))
    chosen = resolved_precision(base, "auto")
    assert chosen in ("float32", "bfloat16") and timed == [precision.MEASURE_BATCH] * 2
    [(key, choice)] = json.loads((tmp_path / "precision.json").read_text()).items()
    assert precision.cpu_model() in key and base_key(base) in key and choice["precision"] == chosen
    assert "ms/image" in choice["reason"]
    assert resolved_precision(base, "auto") == chosen and len(timed) == 2, "the cached choice was not reused"
    assert resolved_precision(base, "bfloat16") == "bfloat16" and len(timed) == 2


WRITER = """
import sys
from pathlib import Path
from model.precision import cache_choice
cache, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(count):
    cache_choice(f"{name}|{i}", {"precision": "float32", "reason": name}, cache)
"""


def test_two_processes_adding_choices_at_once_lose_none_of_them(tmp_path):
    import subprocess
    import sys

    cache, count = tmp_path / "precision.json", 150
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache), name, str(count)],
                                cwd=Path(__file__).parents[1]) for name in ("server", "command")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    keys = json.loads(cache.read_text())
    assert sorted(keys) == sorted(f"{name}|{i}" for name in ("server", "command") for i in range(count))
