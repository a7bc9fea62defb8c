"""Calibration: the rule that decides it, Platt scaling on validation, and the card's calibrator applied in serving."""

import dataclasses

import numpy as np
import pytest

from model.calibration import calibrate
from model.card import new_card
from model.config import ModelConfig
from model.training.platt import (
    ECE_LIMIT,
    choose_calibration,
    expected_calibration_error,
)


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities: (true probabilities, labels), calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return p, (rng.random(n) < p).astype(int)


def test_empty_or_none_calibration_is_the_identity_and_platt_is_monotone():
    probs = np.array([0.05, 0.3, 0.7, 0.95])
    assert calibrate(0.3, {}) == 0.3 and calibrate(0.3, None) == 0.3
    np.testing.assert_array_equal(calibrate(probs, {"method": "none", "brier": 0.1}), probs)
    np.testing.assert_allclose(calibrate(probs, {"method": "platt", "a": 1.0, "b": 0.0}), probs)
    assert np.all(np.diff(calibrate(probs, {"method": "platt", "a": 0.5, "b": -1.0})) > 0)
    with pytest.raises(ValueError, match="unknown calibration"):
        calibrate(0.3, {"method": "magic"})


def test_calibrated_probabilities_are_left_alone():
    p, y = sample(4000)
    assert expected_calibration_error(y, p) < ECE_LIMIT
    decision = choose_calibration(y, p)
    assert decision["method"] == "none" and "ECE" in decision["reason"] and decision["brier"] > 0


def test_overconfident_probabilities_get_platt_scaling_that_lowers_the_brier_score():
    p, y = sample(400, seed=1)
    overconfident = calibrate(p, {"method": "platt", "a": 4.0, "b": 0.0})
    decision = choose_calibration(y, overconfident)
    assert decision["method"] == "platt" and decision["a"] > 0
    assert decision["brier_after"] < decision["brier_before"] and decision["ece_after"] < decision["ece_before"]
    assert decision["a"] == pytest.approx(0.25, abs=0.1)
    assert isinstance(decision["b"], float) and decision["fitted_on"] == "validation patients"


def test_no_calibration_with_one_class_or_a_reversed_ranking():
    assert choose_calibration(np.ones(5), np.linspace(0.1, 0.9, 5))["method"] == "none"
    p, y = sample(400, seed=2)
    decision = choose_calibration(y, 1 - p)
    assert decision["method"] == "none" and "slope" in decision["reason"]


def test_a_perfectly_separated_small_validation_set_gets_a_finite_slope():
    decision = choose_calibration(np.array([0, 0, 1, 1]), np.array([0.4, 0.45, 0.55, 0.6]))
    assert decision["method"] == "platt" and 0 < decision["a"] < 50


def films(*groups: tuple[int, float, int]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) from (films, probability, positives among them) per group."""
    y = np.concatenate([np.arange(n) < positives for n, _, positives in groups]).astype(int)
    return y, np.concatenate([np.full(n, prob) for n, prob, _ in groups])


def test_ece_weights_each_bin_by_its_films_and_counts_a_probability_of_one_in_the_last_bin():
    # 20 films at 0.2 of which half positive: gap 0.3 on a fifth of the films; 80 at 0.8, 64 positive: gap 0
    assert expected_calibration_error(*films((20, 0.2, 10), (80, 0.8, 64))) == pytest.approx(0.2 * 0.3)
    # 0.95 and 1.0 share the bin [0.9, 1]: one positive of two against a mean probability of 0.975
    assert expected_calibration_error(*films((1, 0.95, 1), (1, 1.0, 0))) == pytest.approx(0.475)


def test_validation_ece_just_above_the_limit_is_calibrated_and_just_below_is_not():
    above = films((50, 0.3, 18), (50, 0.7, 38))  # 36% and 76% positive: ECE 0.06
    below = films((50, 0.3, 17), (50, 0.7, 37))  # 34% and 74%: ECE 0.04
    assert expected_calibration_error(*above) == pytest.approx(0.06)
    assert expected_calibration_error(*below) == pytest.approx(0.04)
    assert choose_calibration(*above)["method"] == "platt"
    assert choose_calibration(*below)["method"] == "none"


@pytest.mark.parametrize(("p", "a", "b", "expected"), [
    (0.5, 1.0, np.log(3), 3 / 4),    # odds 1 -> 3
    (1 / 3, 2.0, 0.0, 1 / 5),        # odds 1/2 -> 1/4
    (1 / 3, 2.0, np.log(3), 3 / 7),  # odds 1/2 -> 3 * 1/4
    (0.8, 0.5, -np.log(2), 1 / 2),   # odds 4 -> 2 / 2
])
def test_platt_scaling_multiplies_the_odds_as_hand_computed(p, a, b, expected):
    """sigmoid(a * logit(p) + b) is odds(p) ** a * e ** b in odds: worked out by hand for each row."""
    assert calibrate(p, {"method": "platt", "a": a, "b": b}) == pytest.approx(expected)


def test_serving_applies_the_cards_calibration(fixture_dir):
    from model.serving.predictor import Predictor

    card = new_card(ModelConfig(weights="none", input_size=32), 0.5, "test", {}, {})
    card = dataclasses.replace(card, calibration={"method": "platt", "a": 2.0, "b": float(np.log(3))})
    predictor = Predictor(card=card, run=lambda batch: (np.array([1 / 3]), np.zeros((1, 4, 4)), np.zeros((1, 2))))
    image = next((fixture_dir / "covid").iterdir())
    assert predictor.predict(image).probability == pytest.approx(3 / 7)
