"""Tests of the operating point that transfers: ranks among reference normals, grouping by source, the point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.config import ModelConfig
from model.data import Example
from model.features import Features
from model.training import transfer
from model.training.transfer import reference_rank, source_groups, threshold_at, transfer_point

CONFIG = ModelConfig(weights="none", input_size=32, pooling="avg", head="logistic", optimizer="adam",
                     learning_rate=0.05, epochs=30, batch_size=32, class_weight=True, target_sensitivity=0.9)


def example(i: int, label: int, class_name: str, origin: str = "") -> Example:
    return Example(Path(f"/made/{class_name}/{i}.png"), label, class_name, f"p{i}", class_name, origin=origin)


def features(examples: list[Example], x: np.ndarray) -> Features:
    return Features(x.reshape(len(examples), 1, -1).astype("float32"), np.array([e.label for e in examples], "float32"),
                    examples)


def test_threshold_at_leaves_that_share_of_the_reference_below_it_and_rank_agrees():
    reference = np.random.default_rng(0).uniform(size=200)
    for specificity in (0.5, 0.8, 0.9, 0.995):
        threshold = threshold_at(reference, specificity)
        assert (reference < threshold).mean() == pytest.approx(specificity)
        probs = np.random.default_rng(1).uniform(size=500)
        assert np.array_equal(reference_rank(reference, probs) >= specificity, probs >= threshold)
    assert (reference < threshold_at(reference, 1.0)).all()
    assert reference_rank(np.arange(10.0), np.array([2.0, 2.5, -1.0, 9.0, 10.0])).tolist() == [0.2, 0.3, 0, 0.9, 1]


def test_threshold_at_every_rank_of_the_reference_leaves_exactly_that_many_below_it():
    """Specificities k / 100 are what ranks among 100 normals take; k / 100 * 100 is not always k in floating point
    (0.29 * 100 is 28.999999999999996), and the threshold must still leave exactly k normals below it."""
    reference = np.random.default_rng(2).uniform(size=100)
    assert [int((reference < threshold_at(reference, k / 100)).sum()) for k in range(101)] == list(range(101))


def test_sources_are_held_out_whole_except_one_archive_too_big_for_a_fold():
    examples = ([example(i, 0, "normal", "NIH") for i in range(60)]
                + [example(100 + i, 1, "covid", f"hospital {i % 8}") for i in range(32)]
                + [example(200 + i, 1, "covid") for i in range(8)])
    groups = source_groups(features(examples, np.zeros((100, 1))), folds=5)
    assert groups[:60] == [f"patient:p{i}" for i in range(60)]
    assert groups[60:92] == [f"source:hospital {i % 8}" for i in range(32)]
    assert groups[92:] == [f"patient:p{200 + i}" for i in range(8)]


def test_the_point_holds_the_target_on_positives_of_unseen_sources_and_shows_what_they_cost():
    """Positives of 'easy' sources sit far from the normals, those of 'hard' sources near them: a threshold set on
    the easy ones would miss the hard ones. The point's sensitivity is counted on held-out sources only, so the
    hard sources pull its specificity down."""
    rng = np.random.default_rng(0)
    normals = [example(i, 0, "normal", "archive") for i in range(120)]
    easy = [example(200 + i, 1, "covid", f"easy {i % 6}") for i in range(30)]
    hard = [example(300 + i, 1, "covid", f"hard {i % 6}") for i in range(30)]
    others = [example(400 + i, 0, "other_pneumonia", f"other {i % 4}") for i in range(20)]
    shift = np.concatenate([np.zeros(120), np.full(30, 4.0), np.full(30, 1.0), np.full(20, 2.0)])
    data = features(normals + easy + hard + others, np.stack([shift + rng.normal(size=200), rng.normal(size=200)], 1))
    reference_examples = [example(600 + i, 0, "normal", "archive") for i in range(300)]
    reference = features(reference_examples, rng.normal(size=(300, 2)))

    point = transfer_point(data, CONFIG, reference, target_sensitivity=0.9)

    assert point.sensitivity >= 0.9 and point.n_positive == 60 and point.n_sources == 12
    assert point.n_reference == 300 and point.n_other == 20 and point.folds == 5
    assert 0.2 < point.specificity < 0.8  # the hard sources' positives (shift 1) are found only well into the normals
    assert point.other_specificity < point.specificity  # other pneumonias score above normals
    lo, hi = point.sensitivity_ci95
    assert lo < point.sensitivity < hi
    assert "sensitivity >= 0.9" in point.describe() and "300 reference normals" in point.describe()
    easy_only = transfer_point(data.take(list(range(150)) + list(range(180, 200))), CONFIG, reference,
                               target_sensitivity=0.9)
    assert easy_only.specificity > point.specificity + 0.2


def test_the_reference_must_hold_negatives_only():
    data = features([example(i, i % 2, "covid" if i % 2 else "normal", f"s{i % 5}") for i in range(40)],
                    np.arange(40.0))
    with pytest.raises(ValueError, match="negative"):
        transfer_point(data, CONFIG, data, target_sensitivity=0.9)


def score_is_the_feature(monkeypatch) -> list[tuple[set[str], list[Example]]]:
    """Replace the fold heads by one that scores each film by its first feature, so ranks can be worked by hand;
    returns, per fold, the origins the head was trained on and the examples it then scored."""
    folds: list[tuple[set[str], list[Example]]] = []
    monkeypatch.setattr(transfer, "train_head",
                        lambda shape, train, validation, config: ({e.origin for e in train.examples}, None))

    def scores(head, scored):
        folds.append((head, scored.examples))
        return scored.x[:, 0, 0].astype("float64")

    monkeypatch.setattr(transfer, "probabilities", scores)
    return folds


def test_the_specificity_is_the_rank_of_the_positive_that_completes_the_target(monkeypatch):
    """Reference normals score 0, 1, ..., 9; ten positives (one source each) score 9.5, 8.5, ..., 0.5, so their ranks
    among the normals are 1.0, 0.9, ..., 0.1. Finding 90% of them (9 of 10) needs the 9th highest rank, 0.2; 75%
    needs ceil(7.5) = 8, rank 0.3; all of them, rank 0.1. Of other pneumonias scoring 0.5, 5.5 and 1.5 (ranks 0.1,
    0.6 and 0.2) only the first is below 0.2: the last is called positive, as a positive of rank 0.2 is."""
    score_is_the_feature(monkeypatch)
    positives = [example(i, 1, "covid", f"hospital {i}") for i in range(10)]
    normals = [example(20 + i, 0, "normal", f"normal {i}") for i in range(10)]
    others = [example(40 + i, 0, "other_pneumonia", f"other {i}") for i in range(3)]
    data = features(positives + normals + others,
                    np.concatenate([np.arange(9.5, 0, -1), np.linspace(0.2, 0.8, 10), [0.5, 5.5, 1.5]]))
    reference = features([example(60 + i, 0, "normal", "archive") for i in range(10)], np.arange(10.0))
    for target, specificity, sensitivity in ((0.9, 0.2, 0.9), (0.75, 0.3, 0.8), (1.0, 0.1, 1.0)):
        point = transfer_point(data, CONFIG, reference, target_sensitivity=target)
        assert (point.specificity, point.sensitivity) == pytest.approx((specificity, sensitivity)), target
    assert point.n_sources == 10 and point.n_positive == 10
    assert transfer_point(data, CONFIG, reference, target_sensitivity=0.9).other_specificity == pytest.approx(1 / 3)


def test_a_target_that_is_a_whole_number_of_films_needs_that_many_whatever_the_rounding(monkeypatch):
    """56% of 25 positives is 14 films, though 0.56 * 25 is 14.000000000000002 in floating point: with ranks 25/25,
    24/25, ..., 1/25, the 14th highest is 12/25 = 0.48 (not the 15th, 0.44)."""
    score_is_the_feature(monkeypatch)
    positives = [example(i, 1, "covid", f"hospital {i}") for i in range(25)]
    normals = [example(30 + i, 0, "normal", f"normal {i}") for i in range(5)]
    data = features(positives + normals, np.concatenate([np.arange(24.5, 0, -1), np.full(5, 0.1)]))
    reference = features([example(60 + i, 0, "normal", "archive") for i in range(25)], np.arange(25.0))
    point = transfer_point(data, CONFIG, reference, target_sensitivity=0.56)
    assert (point.specificity, point.sensitivity) == pytest.approx((0.48, 0.56))


def test_no_fold_model_has_seen_the_source_of_a_film_it_scores(monkeypatch):
    """100 films, 5 folds: a fold's share is 20. The archive's 40 normals are more than a share and are held out by
    patient; the 20 films of 'exact' are exactly a share, so that source is held out whole, like the small ones."""
    folds = score_is_the_feature(monkeypatch)
    films = ([example(i, 0, "normal", "archive") for i in range(40)]
             + [example(100 + i, 1, "covid", "exact") for i in range(20)]
             + [example(200 + i, i % 2, "covid" if i % 2 else "normal", f"small {i % 8}") for i in range(40)])
    data = features(films, np.random.default_rng(0).normal(size=100))
    groups = source_groups(data, folds=5)
    assert set(groups[40:60]) == {"source:exact"} and len(set(groups[:40])) == 40
    reference = features([example(300 + i, 0, "normal", "reference") for i in range(30)], np.arange(30.0))
    transfer_point(data, CONFIG, reference, target_sensitivity=0.9)
    held_out = [(seen, scored) for seen, scored in folds if scored and scored[0].origin != "reference"]
    assert len(held_out) == 5 and sum(len(scored) for _, scored in held_out) == 100
    for seen, scored in held_out:
        assert {e.origin for e in scored if e.origin != "archive"}.isdisjoint(seen)
