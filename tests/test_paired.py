"""The paired bootstrap of model.compare resamples patients, so the images of one patient move together."""

from __future__ import annotations

import numpy as np

from model.training.paired import paired_bootstrap
from tests.bootstrap import auc_resamples, tails


def patients_data(images_each: int, seed: int = 0):
    """Six positive and six negative patients, each with `images_each` identical images: (y, p_a, p_b, patients)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], 6)
    p_a, p_b = np.clip(0.3 * y + 0.7 * rng.random(12), 0, 1), rng.random(12)
    patients = [f"patient{i}" for i in range(12)]
    return (np.repeat(y, images_each), np.repeat(p_a, images_each), np.repeat(p_b, images_each),
            list(np.repeat(patients, images_each)))


def test_copies_of_a_patients_image_change_no_interval():
    """Resampling patients draws the same patients whatever their image count; equal copies leave every AUC,
    sensitivity and specificity as it was, so the intervals are those of one image per patient."""
    one = paired_bootstrap(*patients_data(1), thresholds=(0.5, 0.5), n_boot=100)
    three = paired_bootstrap(*patients_data(3), thresholds=(0.5, 0.5), n_boot=100)
    np.testing.assert_allclose(three, one)


def test_images_of_one_patient_are_not_counted_as_independent():
    """Treating each copy as its own patient would pretend to three times the evidence: narrower intervals."""
    y, p_a, p_b, patients = patients_data(3)
    grouped = paired_bootstrap(y, p_a, p_b, patients, n_boot=100)
    each_alone = paired_bootstrap(y, p_a, p_b, [f"image{i}" for i in range(len(y))], n_boot=100)
    auc_difference = 2
    assert np.diff(each_alone[auc_difference]) < np.diff(grouped[auc_difference])


def test_each_models_auc_interval_leaves_two_and_a_half_percent_of_resampled_aucs_on_each_side():
    rng = np.random.default_rng(3)
    y = np.repeat([1, 0], 20)
    p_a, p_b = np.clip(0.3 * y + 0.7 * rng.random(40), 0, 1), rng.random(40)
    intervals = paired_bootstrap(y, p_a, p_b, [f"patient{i}" for i in range(40)], n_boot=400, seed=2)
    for model, p in enumerate((p_a, p_b)):
        below, above = tails(auc_resamples(p[y == 1], p[y == 0]), intervals[model])
        assert 0.03 < below + above < 0.075, "a 95% interval: 5% outside, not 10% (90%) or 1% (99%)"
        assert below > 0.01 and above > 0.01, "the interval cuts both tails"
