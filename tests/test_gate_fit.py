"""The input gate's training (model/training/gate_fit.py) on made features: its thresholds against quantiles worked by
hand, its refusal table counted by hand, and patients kept whole between its out-of-fold scores and its fits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from model.data import Example
from model.gate import IN_SCOPE
from model.training.gate_fit import Item, _counts, fit_gate, in_scope_items, out_of_fold, refused_table, split_items, thresholds
from tests.test_gate import tiny_gate


def test_the_distance_threshold_is_one_and_a_half_times_the_in_scope_quantile_as_the_card_says():
    """model/MODEL_CARD.md: "the distance threshold is 1.5 times the 99.5% quantile of out-of-fold in-scope
    distances". Distances 0, 0.005, ..., 1 (201 films): the 99.5% quantile is the one at index 0.995 * 200 = 199,
    0.995, so the threshold is 1.5 * 0.995 = 1.4925."""
    novelty = np.linspace(0, 1, 201)
    _, distance = thresholds(np.linspace(0.5, 1, 201), novelty, np.zeros(201, dtype=bool))
    assert distance == pytest.approx(1.4925)


def test_the_score_floor_is_taken_over_the_films_the_distance_lets_through():
    """996 ordinary films (distance 0..1, score 0.5..1) and 4 far ones (distance 100, score 0): the 99.5% distance
    quantile (index 994.005 of 1,000) lies among the ordinary films, so the 4 are refused by distance, and the
    floor is the 1% quantile of the 996 ordinary scores alone: index 9.95 of linspace(0.5, 1, 996), 0.5 + 9.95 *
    0.5 / 995 = 0.505 (over all 1,000, the 4 zeros would pull it to about 0.5030)."""
    novelty = np.concatenate([np.linspace(0, 1, 996), np.full(4, 100.0)])
    in_scope = np.concatenate([np.linspace(0.5, 1, 996), np.zeros(4)])
    floor, distance = thresholds(in_scope, novelty, np.zeros(1000, dtype=bool))
    assert 1.0 < distance < 100
    assert floor == pytest.approx(0.505, abs=1e-6)


def test_a_film_at_the_distance_threshold_is_let_through_and_counts_for_the_floor():
    """Distances: 994 films over 0..1, two at 2 and four at 3 (score 0). The 99.5% quantile (index 994.005) is 2, the
    threshold 1.5 * 2 = 3, so the four at 3 pass and their zeros count: the floor is the 1% quantile of all 1,000
    scores, index 9.99 of four zeros and linspace(0.5, 1, 996): 0.5 + (5 + 0.99) * 0.5 / 995 = 0.50301."""
    novelty = np.concatenate([np.linspace(0, 1, 994), [2.0, 2.0], np.full(4, 3.0)])
    in_scope = np.concatenate([np.linspace(0.5, 1, 996), np.zeros(4)])
    floor, distance = thresholds(in_scope, novelty, np.zeros(1000, dtype=bool))
    assert distance == 3.0
    assert floor == pytest.approx(0.5 + 5.99 * 0.5 / 995, abs=1e-9)


def example(i: int, class_name: str, patient: str) -> Example:
    return Example(Path(f"/made/{class_name}/{i}.png"), int(class_name == "covid"), class_name, patient, "src")


def test_only_in_scope_covid_films_count_as_covid_films():
    items = in_scope_items([example(0, "covid", "p0"), example(1, "normal", "p1"), example(2, "pneumonia", "p2")])
    assert [i.covid for i in items] == [True, False, False]
    assert [i.tag for i in items] == ["covid (src)", "normal (src)", "pneumonia (src)"]
    assert not Item(Path("/made/ct.png"), "ct", "ct0", "covid-like ct").covid


def made_films(rng: np.random.Generator, n_normal: int = 40, n_covid: int = 20, n_other: int = 30,
               views: int = 1) -> tuple[np.ndarray, list[Item]]:
    """Normal films near the origin, COVID-19 films shifted (sick lungs look unusual), lateral views and CT slices
    off on axes of their own; (n, views + 1, 4) features, each view its film plus a little noise."""
    films = ([example(i, "normal", f"n{i}") for i in range(n_normal)]
             + [example(100 + i, "covid", f"c{i}") for i in range(n_covid)])
    kinds = ["lateral", "ct"] * (n_other // 2)
    items = in_scope_items(films) + [Item(Path(f"/made/{k}/{i}.png"), k, f"{k}{i}", k) for i, k in enumerate(kinds)]
    centres = np.zeros((len(items), 4))
    centres[n_normal:n_normal + n_covid, 0] = 2.5
    centres[n_normal + n_covid:, 1] = [3.0 if k == "lateral" else 0.0 for k in kinds]
    centres[n_normal + n_covid:, 2] = [3.0 if k == "ct" else 0.0 for k in kinds]
    films_x = centres + rng.normal(size=centres.shape)
    return films_x[:, None, :] + 0.1 * rng.normal(size=(len(items), views + 1, 4)), items


def test_a_fitted_gate_keeps_covid_films_that_lie_beyond_the_other_films():
    """400 normal films and 20 COVID-19 films, three of them far out (sick ICU films). Over all 420 films the 99.5%
    distance quantile is about 5, and 1.5 times it (about 8) below the two farthest COVID-19 films (about 20 and
    137), which it would refuse; over the 20 COVID-19 films alone the quantile lies between the farthest two, and 1.5 times it beyond the farthest. So out of fold at
    most one COVID-19 film (the 1% floor of 20 scores lies between the lowest two) is refused, not the far ones; of
    all 420 films, those under the 1% floor of all 420 (index 4.19: the lowest 5) at most, and some."""
    x, items = made_films(np.random.default_rng(0), n_normal=400)
    x[417:420, :, 0] += np.array([10.0, 20.0, 40.0])[:, None]
    gate, oof = fit_gate(x, items)
    assert oof["covid_films"] == 20 and oof["in_scope_films"] == 420
    assert oof["covid_refused"] <= 1 / 20 and float(oof["covid_refused"] * 20).is_integer()  # a share of 20 films
    assert 0 < oof["refused"] <= 5 / 420
    assert gate.kinds == ("ct", IN_SCOPE, "lateral")
    assert [s.answered for s in gate.check(x[417:420, 0])] == [True] * 3
    distance = gate.scores(x.reshape(-1, 4))[2].reshape(len(items), 2)
    # a Mahalanobis model of the in-scope films alone (4 axes of 4 features), centred on them, averages exactly
    # (n - 1) / n over the n = 840 views it was fitted on (PCA's variances divide by n - 1); measured from the centre
    # of every film it gave about 1.004, and one over every film about 0.90
    assert distance[:420].mean() == pytest.approx(839 / 840, rel=1e-6)


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    """The Wilson score interval (Wilson 1927), written out."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [centre - half, centre + half]


def test_the_refusal_table_counts_each_row_by_hand_on_the_clean_view():
    """tiny_gate answers (a, b) when a >= 0 and b * b <= 4. The second view of each film says the opposite, so a
    table read from it would be wrong everywhere."""
    items = in_scope_items([example(0, "covid", "p0"), example(1, "covid", "p1"), example(2, "normal", "p2")])
    items += [Item(Path(f"/made/{kind}/{i}.png"), kind, f"{kind}{i}", kind)
              for i, kind in enumerate(("lateral", "lateral", "lateral", "ct"))]
    clean = np.array([[1.0, 0], [-1, 0], [1, 0], [-1, 0], [-2, 0], [1, 0], [1, 3]])
    other = np.stack([-clean[:, 0], np.where(clean[:, 1] > 2, 0.0, 5.0)], axis=1)
    table = refused_table(tiny_gate(), np.stack([clean, other], axis=1), items)
    expected = {"all COVID-19 films": (2, 1), "all adult films": (3, 1), "covid (src)": (2, 1), "ct": (1, 1),
                "lateral": (3, 2), "normal (src)": (1, 0)}
    assert list(table) == sorted(expected)
    for tag, (n, refused) in expected.items():
        row = table[tag]
        assert (row["n"], row["refused"]) == (n, refused), tag
        assert row["share"] == pytest.approx(refused / n)
        assert row["ci95"] == pytest.approx(wilson(refused, n), abs=1e-6)


def test_a_films_out_of_fold_score_does_not_depend_on_any_image_of_its_patient():
    """Each in-scope patient has two films, each with an augmented view. Moving the patient's second film and the
    first film's augmented view far away leaves the first film's out-of-fold scores exactly as they were: no fit
    that scored it saw an image of its patient. Some other films' scores do move (the test can see a change)."""
    rng = np.random.default_rng(1)
    x, items = made_films(rng, n_normal=24, n_covid=0, n_other=16)
    patients = [f"p{i // 2}" for i in range(24)]
    items = [Item(item.path, item.kind, patients[i], item.tag) if item.kind == IN_SCOPE else item
             for i, item in enumerate(items)]
    base_scope, base_novelty = out_of_fold(x, items)
    for first in (0, 10, 22):
        moved = x.copy()
        moved[first, 1] += 4.0
        moved[first + 1] += 4.0
        in_scope, novelty = out_of_fold(moved, items)
        assert in_scope[first] == pytest.approx(base_scope[first], rel=1e-9), first
        assert novelty[first] == pytest.approx(base_novelty[first], rel=1e-9), first
        assert not np.allclose(novelty, base_novelty)


def test_the_held_out_part_of_each_kind_shares_no_patient_with_the_training_part():
    """Three images per patient, 10 children and 10 lateral views, and a kind with one patient (all in training)."""
    items = [Item(Path(f"/made/{kind}/{p}-{j}.png"), kind, f"{kind}-{p}", kind)
             for kind, patients in (("pediatric", 10), ("lateral", 10), ("ct", 1))
             for p in range(patients) for j in range(3)]
    train, held = split_items(items)
    assert len(train) + len(held) == len(items)
    assert not {i.group for i in train} & {i.group for i in held}
    for kind in ("pediatric", "lateral"):
        assert len({i.group for i in held if i.kind == kind}) == 3  # 30% of 10 patients
    assert [i.kind for i in held if i.kind == "ct"] == []


@pytest.mark.parametrize("others", [("ct", "lateral"), ("ct", "ct")], ids=["three kinds", "two kinds"])
def test_the_gates_kind_probabilities_are_those_of_scikit_learn_and_its_distance_centred(others):
    from model.training import gate_fit

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, (60, 5)), rng.normal(2, 1, (30, 5)), rng.normal(-2, 1, (30, 5))])
    kinds = np.array([IN_SCOPE] * 60 + [others[0]] * 30 + [others[1]] * 30)
    scaler, classifier, novelty = gate_fit._fit(x, kinds)
    _, probs, distance = gate_fit._gate(scaler, classifier, novelty).scores(x)
    np.testing.assert_allclose(probs, classifier.predict_proba(scaler.transform(x)), atol=1e-9)
    centred = novelty.transform(scaler.transform(x[:60]))
    np.testing.assert_allclose(distance[:60], (centred**2 / novelty.explained_variance_).mean(axis=1), rtol=1e-9)


def test_the_card_counts_the_gates_training_images_per_row_in_row_order():
    items = [Item(Path(f"{i}.png"), kind, f"p{i}", tag) for i, (kind, tag) in
             enumerate([("pediatric", "pediatric"), (IN_SCOPE, "normal (NIH)"), ("ct", "ct"), ("pediatric", "pediatric"),
                        (IN_SCOPE, "covid (cohen)")])]
    counts = _counts(items)
    assert counts == {"covid (cohen)": 1, "ct": 1, "normal (NIH)": 1, "pediatric": 2}
    assert list(counts) == sorted(counts) and _counts([]) == {}
