"""Every network pass of a server runs on one thread, whichever thread asks, and a replaced model is let go."""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from model.config import ModelConfig
from model.serving.batching import BatchingPredictor
from model.serving.network import on_network_thread
from model.serving.predictor import load_predictor
from tests.server import make_model


class Recording:
    """A predictor that notes the thread each batch runs on."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def predict_many(self, items):
        self.threads.append(threading.get_ident())
        return [item.grey.shape for item in items]


def predict_together(batched: BatchingPredictor, count: int) -> tuple[list, set[int]]:
    """`count` callers at once, each from a thread of its own: their answers and their threads."""
    start, callers = threading.Barrier(count), set()

    def call(side: int):
        start.wait()
        callers.add(threading.get_ident())
        return batched.predict(np.zeros((side, 4), "uint8"))

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(1, count + 1))), callers


def test_batches_of_every_caller_and_every_model_run_on_one_thread_that_is_no_callers():
    old, new = Recording(), Recording()
    answers, old_callers = predict_together(BatchingPredictor(old, max_batch_size=3), 12)
    assert answers == [(side, 4) for side in range(1, 13)], "each caller gets its own answer"
    more, new_callers = predict_together(BatchingPredictor(new, max_batch_size=3), 12)
    threads = set(old.threads + new.threads)
    assert len(old.threads) >= 4 and len(threads) == 1, "every batch, before and after a swap, on one thread"
    assert not threads & (old_callers | new_callers | {threading.get_ident()})


def test_a_call_made_on_the_network_thread_runs_there_directly():
    inner = on_network_thread(lambda: on_network_thread(threading.get_ident))
    assert inner == on_network_thread(threading.get_ident) != threading.get_ident()


def test_a_replaced_predictor_is_garbage_collected_after_serving_concurrent_callers(tmp_path):
    folder = make_model(tmp_path / "model", ModelConfig(weights="none", input_size=32, pooling="avg", dense=(4,)))
    predictor = load_predictor(folder, "float32")
    answers, _ = predict_together(BatchingPredictor(predictor, max_batch_size=4), 6)
    assert all(answer.model_version == predictor.version for answer in answers)
    gone = weakref.ref(predictor)
    del predictor, answers
    gc.collect()
    assert gone() is None, "nothing (batcher, network thread, compiled function) keeps the old model alive"


def test_a_models_timings_and_answer_checks_run_on_the_network_thread_never_beside_a_serving_pass(tmp_path,
                                                                                                 monkeypatch):
    from model.serving import measure

    folder = make_model(tmp_path / "model", ModelConfig(weights="none", input_size=32, pooling="avg", dense=(4,)))
    predictor, network = load_predictor(folder, "float32"), on_network_thread(threading.get_ident)
    timed, answered = [], []
    monkeypatch.setattr(measure, "ms_per_image", lambda run, x: timed.append(threading.get_ident()) or 1.0)
    monkeypatch.setattr(measure, "_answers", lambda p, greys: answered.append(threading.get_ident()) or [])
    result = measure.measure({"float32": predictor}, [np.zeros((40, 40), "uint8")], 4)
    assert result["ms_per_image"] == {"float32": {"1": 1.0, "4": 1.0}}
    assert timed == [network, network] and answered == [network]


def test_the_batcher_trims_the_heap_when_it_falls_idle_after_enough_pixels():
    from model.decode_budget import TRIM_AFTER_BYTES

    trims = []
    batched = BatchingPredictor(Recording(), max_batch_size=2, release=lambda: trims.append(len(batched._pending)))
    third = np.zeros((TRIM_AFTER_BYTES // 3 // 1024 + 1, 1024), "uint8")
    batched.predict(third)
    batched.predict(third)
    assert trims == [], "two thirds of the threshold: not yet"
    batched.predict(third)
    assert trims == [0], "trimmed once the pixels since the last trim reach the threshold, with nothing waiting"
