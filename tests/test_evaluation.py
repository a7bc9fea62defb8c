import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model.training.evaluation import (
    bootstrap_auc_ci,
    choose_threshold,
    cross_validated_summary,
    evaluate,
    wilson_interval,
)
from tests.bootstrap import auc_resamples, tails


def _noisy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative-but-imperfect probabilities."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    return y, np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)


def test_perfect_random_and_inverted_classifiers():
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 1000)
    perfect = np.where(y == 1, 0.9, 0.1)
    assert evaluate("perfect", y, perfect, 0.5, n_boot=50).metrics["auc"] == 1.0
    assert evaluate("inverted", y, 1 - perfect, 0.5, n_boot=50).metrics["auc"] == 0.0
    assert evaluate("random", y, rng.random(len(y)), 0.5, n_boot=50).metrics["auc"] == pytest.approx(0.5, abs=0.04)


def test_confusion_matrix_and_rates_match_hand_count():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.4, 0.2, 0.7, 0.1, 0.2, 0.3, 0.6, 0.0]
    m = evaluate("hand", y, p, 0.5, n_boot=50).metrics
    assert m["confusion_matrix"] == {"tn": 4, "fp": 2, "fn": 2, "tp": 2}
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["sensitivity"] == m["recall"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["f1"] == pytest.approx(0.5)
    assert (m["n"], m["n_positive"], m["n_negative"]) == (10, 4, 6)


def test_threshold_is_inclusive_and_loss_is_cross_entropy():
    m = evaluate("edge", [1, 0], [0.5, 0.25], 0.5, n_boot=10).metrics
    assert m["confusion_matrix"]["tp"] == 1
    assert m["loss"] == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)


def test_intervals_contain_estimate_and_shrink_with_n():
    small = evaluate("small", *_noisy(60), 0.5, n_boot=200).metrics
    large = evaluate("large", *_noisy(600), 0.5, n_boot=200).metrics
    for m in (small, large):
        for key in ("auc", "sensitivity", "specificity"):
            low, high = m[f"{key}_ci95"]
            assert low <= m[key] <= high
    for key in ("auc", "sensitivity", "specificity"):
        assert np.diff(large[f"{key}_ci95"]) < np.diff(small[f"{key}_ci95"])


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 5)[0] == pytest.approx(0.0, abs=1e-12)


def test_bootstrap_is_seeded():
    y, p = _noisy(80)
    first = evaluate("a", y, p, 0.5, n_boot=200, seed=3).metrics["auc_ci95"]
    assert evaluate("b", y, p, 0.5, n_boot=200, seed=3).metrics["auc_ci95"] == first
    assert evaluate("c", y, p, 0.5, n_boot=200, seed=4).metrics["auc_ci95"] != first


def test_threshold_reaches_target_sensitivity_and_is_highest():
    y, p = _noisy(200, seed=2)
    for target in (0.8, 0.9, 0.95, 1.0):
        t = choose_threshold(y, p, target_sensitivity=target)
        assert 0 <= t <= 1
        assert p[y == 1][p[y == 1] >= t].size / (y == 1).sum() >= target
        higher = p[p > t].min()
        assert (p[y == 1] >= higher).mean() < target


def test_youden_threshold_separates_separable_data():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.2, 0.3, 0.45, 0.55, 0.7, 0.99])
    m = evaluate("sep", y, p, choose_threshold(y, p), n_boot=20).metrics
    assert m["sensitivity"] == m["specificity"] == 1.0


def test_choose_threshold_rejects_single_class_and_bad_target():
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="target_sensitivity"):
        choose_threshold([0, 1], [0.2, 0.9], target_sensitivity=1.5)


def test_single_class_gives_none_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = evaluate("pos only", [1, 1, 1, 1], [0.1, 0.6, 0.7, 0.9], 0.5, n_boot=50).metrics
        none_predicted = evaluate("none predicted", [0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 0.9, n_boot=50).metrics
    assert m["auc"] is None and m["auc_ci95"] is None and m["auc_ci95_resamples"] == 0
    assert m["specificity"] is None and m["specificity_ci95"] is None
    assert m["sensitivity"] == 0.75
    assert none_predicted["precision"] is None
    assert none_predicted["f1"] == 0.0
    json.dumps(m, allow_nan=False)


def test_per_source_split():
    y = [1, 0, 1, 0, 1, 1]
    p = [0.9, 0.8, 0.7, 0.1, 0.2, 0.6]
    sources = ["a", "a", "b", "b", "c", "c"]
    m = evaluate("src", y, p, 0.5, sources=sources, n_boot=20).metrics
    per = m["per_source"]
    assert sorted(per) == ["a", "b", "c"]
    assert per["a"]["confusion_matrix"] == {"tn": 0, "fp": 1, "fn": 0, "tp": 1}
    assert per["b"]["auc"] == 1.0 and per["b"]["accuracy"] == 1.0
    assert per["c"]["auc"] is None and per["c"]["sensitivity"] == 0.5
    assert "per_source" not in per["a"]
    assert sum(s["n"] for s in per.values()) == m["n"]
    within = m["within_collection"]
    assert within["sources"] == ["a", "b"] and within["n"] == 4
    assert within["auc"] == pytest.approx(0.75)  # a's negative (0.8) outranks b's positive (0.7)
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize(
    "y, p, message",
    [
        ([0, 1], [0.5], "labels"),
        ([0, 2], [0.5, 0.5], "only 0 and 1"),
        ([0, 1], [0.5, 1.5], r"\[0, 1\]"),
        ([0, 1], [0.5, np.nan], "finite"),
        ([], [], "zero images"),
    ],
)
def test_bad_input_is_rejected(y, p, message):
    with pytest.raises(ValueError, match=message):
        evaluate("bad", y, p, 0.5)


def test_bad_threshold_and_sources_are_rejected():
    with pytest.raises(ValueError, match="threshold"):
        evaluate("bad", [0, 1], [0.2, 0.8], 1.5)
    with pytest.raises(ValueError, match="sources"):
        evaluate("bad", [0, 1], [0.2, 0.8], 0.5, sources=["a"])


def test_keras_shaped_probabilities_are_accepted():
    m = evaluate("keras", [0, 1], np.array([[0.2], [0.8]]), 0.5, n_boot=10).metrics
    assert m["accuracy"] == 1.0


def test_cross_validated_summary_pools_each_fold_at_its_threshold():
    fold_a = evaluate("fold 1", [0, 0, 1, 1], [0.1, 0.3, 0.4, 0.9], 0.35, sources=["x", "y", "x", "y"], n_boot=20)
    fold_b = evaluate("fold 2", [0, 0, 1, 1], [0.5, 0.6, 0.65, 0.9], 0.62, sources=["x", "x", "y", "y"], n_boot=20)
    summary = cross_validated_summary([fold_a, fold_b], n_boot=20)
    pooled = summary["pooled"]
    assert summary["n_folds"] == 2
    assert pooled["confusion_matrix"] == {"tn": 4, "fp": 0, "fn": 0, "tp": 4}
    assert pooled["threshold"] is None
    assert pooled["n"] == 8
    assert pooled["auc"] < 1.0  # fold 2's negatives score above fold 1's positives
    assert sum(s["n"] for s in pooled["per_source"].values()) == 8
    assert pooled["within_collection"]["sources"] == ["x", "y"] and pooled["within_collection"]["n"] == 8
    assert summary["auc"]["mean"] == 1.0 and summary["auc"]["std"] == 0.0
    assert [f["name"] for f in summary["folds"]] == ["fold 1", "fold 2"]
    json.dumps(summary, allow_nan=False)


def test_cross_validated_summary_spread_ignores_undefined_folds():
    folds = [
        evaluate("one class", [1, 1], [0.6, 0.7], 0.5, n_boot=10),
        evaluate("good", [0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], 0.5, n_boot=10),
        evaluate("worse", [0, 1, 0, 1], [0.6, 0.9, 0.2, 0.4], 0.5, n_boot=10),
    ]
    auc = cross_validated_summary(folds, n_boot=10)["auc"]
    assert auc["n_folds"] == 2
    assert auc["mean"] == pytest.approx((1.0 + 0.75) / 2)
    assert auc["min"] == 0.75 and auc["max"] == 1.0
    with pytest.raises(ValueError, match="at least one"):
        cross_validated_summary([])


def test_bootstrap_auc_resamples_each_class_and_brackets_the_auc():
    y, p = _noisy(120, seed=5)
    ci, used = bootstrap_auc_ci(y, p, n_boot=300, seed=7)
    assert used == 300
    assert ci[0] < roc_auc_score(y, p) < ci[1]
    separable = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert bootstrap_auc_ci(np.array([0, 0, 0, 1, 1, 1]), separable, n_boot=50)[0] == [1.0, 1.0]
    assert bootstrap_auc_ci(np.array([0, 0, 0, 0, 0, 1]), separable, n_boot=50) == (None, 0)


def test_the_auc_interval_leaves_two_and_a_half_percent_of_resampled_aucs_on_each_side():
    y, p = _noisy(60, seed=2)
    resampled = auc_resamples(p[y == 1], p[y == 0])
    for seed in range(3):
        below, above = tails(resampled, bootstrap_auc_ci(y, p, n_boot=1000, seed=seed)[0])
        assert 0.03 < below + above < 0.075, "a 95% interval: 5% outside, not 10% (90%) or 1% (99%)"
        assert below > 0.01 and above > 0.01, "the interval cuts both tails"


def test_the_cards_threshold_is_chosen_on_validation_never_on_test(fixture_dir, tmp_path):
    """Validation and test are each perfectly separated, at different places: Youden's J (ties to the highest
    threshold) picks each set's lowest positive probability, 0.98 on validation and 0.95 on test."""
    import keras

    from model.architecture import build_config_base
    from model.artifact import load_card
    from model.config import ModelConfig
    from model.data import scan_folder
    from model.features import Features, SplitFeatures
    from model.training.export import finish

    config = ModelConfig(input_size=32, weights="none", pooling="avg", head="logistic")
    base = build_config_base(config)
    features_in = keras.Input((512,), name="features")
    head = keras.Model(features_in, keras.layers.Dense(1, activation="sigmoid", name="preds")(features_in))
    head.get_layer("preds").set_weights([np.eye(512, 1, dtype="float32"), np.zeros(1, "float32")])

    examples = scan_folder(fixture_dir)
    positives, negatives = [e for e in examples if e.label == 1], [e for e in examples if e.label == 0]

    def part(chosen, probs) -> Features:
        x = np.zeros((len(chosen), 1, 512), "float32")
        x[:, 0, 0] = np.log(np.array(probs)) - np.log1p(-np.array(probs))
        return Features(x, np.array([e.label for e in chosen], "float32"), chosen)

    validation = part(positives[:2] + negatives[:2], [0.98, 0.99, 0.01, 0.02])
    test = part(positives[2:4] + negatives[2:4], [0.95, 0.99, 0.01, 0.90])
    sets = SplitFeatures(part(positives[4:6] + negatives[4:6], [0.5] * 4), validation, test)
    finish(base, head, config, sets, tmp_path)
    card = load_card(tmp_path)
    assert card.calibration["method"] == "none"
    assert card.threshold == pytest.approx(0.98, abs=1e-5)
    assert card.threshold_rule == "Youden's J on validation"
