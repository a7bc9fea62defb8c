from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data import (
    EXCLUDED,
    CorrectionCounts,
    Example,
    dataset_summary,
    describe_split,
    make_dataset,
    merge_corrections,
    scan_folder,
    split_by_patient,
)
from model.images import image_identity, read_grey


def write_png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def synthetic_examples(n_positive_patients: int, n_negative_patients: int) -> list[Example]:
    """Patients with 1 to 4 images each; split_by_patient never opens the files."""
    rng = np.random.default_rng(0)
    examples = []
    for p in range(n_positive_patients + n_negative_patients):
        label = int(p < n_positive_patients)
        for i in range(rng.integers(1, 5)):
            examples.append(Example(Path(f"p{p}_{i}.png"), label, ["normal", "covid"][label], f"p{p}", "synthetic"))
    return examples


def assert_valid_split(split, examples):
    parts = [split.train, split.validation, split.test]
    patients = [{e.patient_id for e in part} for part in parts]
    assert not patients[0] & patients[1]
    assert not patients[0] & patients[2]
    assert not patients[1] & patients[2]
    assert Counter(e.path for part in parts for e in part) == Counter(e.path for e in examples)
    assert all(len(part) == len(set(part)) for part in parts)
    for part in parts:
        assert {e.label for e in part} == {0, 1}


def test_scan_fixture_set(fixture_dir):
    examples = scan_folder(fixture_dir)
    assert Counter(e.class_name for e in examples) == {"covid": 10, "normal": 8, "other_pneumonia": 6}
    assert all(e.label == (e.class_name == "covid") for e in examples)
    assert examples == sorted(examples, key=lambda e: e.path)
    by_patient = Counter(e.patient_id for e in examples)
    assert by_patient["cohen:331b"] == by_patient["cohen:168"] == by_patient["cohen:279"] == 2
    normal = [e for e in examples if e.class_name == "normal"]
    assert all(e.patient_id == e.path.relative_to(fixture_dir).as_posix() for e in normal)
    assert {e.source for e in normal} == {"rtchanon/Machine-Learning-for-COVID-19-detection-from-chest-X-RAYS"}
    assert {e.source for e in examples if e.class_name == "covid"} == {"hida6/covid-chestxray-dataset"}


def test_scan_source_column_and_positive_folders(fixture_dir):
    examples = scan_folder(fixture_dir, positive=("other_pneumonia",), source_column="origin")
    assert sum(e.label for e in examples) == 6
    assert {e.source for e in examples if e.class_name == "other_pneumonia"} >= {"en.wikipedia.org", "Saudi Arabia"}
    with pytest.raises(ValueError, match="no column 'hospital'"):
        scan_folder(fixture_dir, source_column="hospital")


def test_scan_kaggle_layout_skips_masks_hidden_and_other_files(tmp_path):
    write_png(tmp_path / "COVID" / "images" / "COVID-1.png", 1)
    write_png(tmp_path / "COVID" / "images" / "COVID-2.PNG", 2)
    write_png(tmp_path / "COVID" / "masks" / "COVID-1.png", 3)
    write_png(tmp_path / "Normal" / "images" / "Normal-1.png", 4)
    write_png(tmp_path / "Normal" / "images" / ".Normal-2.png", 5)
    write_png(tmp_path / "Lung_Opacity" / "images" / "Lung_Opacity-1.png", 6)
    write_png(tmp_path / ".cache" / "x.png", 7)
    (tmp_path / "Normal" / "images" / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("readme")

    examples = scan_folder(tmp_path)

    relative = [e.path.relative_to(tmp_path).as_posix() for e in examples]
    assert relative == [
        "COVID/images/COVID-1.png",
        "COVID/images/COVID-2.PNG",
        "Lung_Opacity/images/Lung_Opacity-1.png",
        "Normal/images/Normal-1.png",
    ]
    assert [e.label for e in examples] == [1, 1, 0, 0]
    assert [e.patient_id for e in examples] == relative
    assert [e.source for e in examples] == ["COVID", "COVID", "Lung_Opacity", "Normal"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class sub-folders"),
        ({"covid/notes.txt": None, "normal/": None}, "no images"),
        ({"covid/a.png": 1, "COVID/b.png": 2}, "no negative class"),
        ({"normal/a.png": 1, "pneumonia/b.png": 2}, "no positive class"),
        ({"covid/a.png": 1, "normal/b.png": 2, "MANIFEST.csv": "path,patient_id\n"}, "no 'file' column"),
    ],
)
def test_scan_rejects_unusable_folders(tmp_path, layout, message):
    for name, content in layout.items():
        path = tmp_path / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        elif name.endswith(".png"):
            write_png(path, content)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content or "")
    with pytest.raises(ValueError, match=message):
        scan_folder(tmp_path)


def test_scan_rejects_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        scan_folder(tmp_path / "nowhere")


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_split_fixture_set_keeps_patients_apart(fixture_dir, seed):
    examples = scan_folder(fixture_dir)
    split = split_by_patient(examples, seed=seed)
    assert_valid_split(split, examples)
    assert split_by_patient(examples, seed=seed) == split


def test_split_sizes_and_seeds_on_many_patients():
    examples = synthetic_examples(60, 90)
    split = split_by_patient(examples, val_fraction=0.15, test_fraction=0.15, seed=7)
    assert_valid_split(split, examples)
    n_patients = len({e.patient_id for e in examples})
    for part in (split.validation, split.test):
        assert 0.10 < len({e.patient_id for e in part}) / n_patients < 0.20
        assert 0.3 < np.mean([e.label for e in part]) < 0.5
    assert split_by_patient(examples, seed=8) != split


def test_split_falls_back_when_a_class_has_few_patients():
    examples = synthetic_examples(3, 20)
    split = split_by_patient(examples, val_fraction=0.2, test_fraction=0.2, seed=0)
    parts = [split.train, split.validation, split.test]
    assert sorted(e.path for part in parts for e in part) == sorted(e.path for e in examples)
    patients = [{e.patient_id for e in part} for part in parts]
    assert sum(len(p) for p in patients) == len(set().union(*patients))


def test_split_without_validation():
    examples = synthetic_examples(20, 20)
    split = split_by_patient(examples, val_fraction=0, test_fraction=0.25)
    assert split.validation == []
    assert len(split.train) + len(split.test) == len(examples)


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (0.2, 1.0), (0.5, 0.5)])
def test_split_rejects_bad_fractions(val, test):
    with pytest.raises(ValueError, match="fraction"):
        split_by_patient(synthetic_examples(10, 10), val_fraction=val, test_fraction=test)


def test_split_rejects_empty_and_single_patient():
    with pytest.raises(ValueError, match="no examples"):
        split_by_patient([])
    one = [Example(Path(f"{i}.png"), i % 2, "x", "same", "s") for i in range(4)]
    with pytest.raises(ValueError, match="one patient"):
        split_by_patient(one)


def test_describe_split_counts(fixture_dir):
    split = split_by_patient(scan_folder(fixture_dir))
    rows = [line.split() for line in describe_split(split).splitlines()[1:]]
    for name, part in split.parts().items():
        totals = [row for row in rows if row[0] == name and row[1] == "(all)"]
        assert totals == [[name, "(all)", str(len(part)), str(len({e.patient_id for e in part}))]]
        covid = [row for row in rows if row[0] == name and row[1] == "covid"]
        assert covid[0][2] == str(sum(e.label for e in part))


def reencoded(source: Path, path: Path) -> Path:
    """The image's decoded grey saved as PNG, as the feedback store keeps a flagged upload: other bytes, same pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(read_grey(source)).save(path)
    return path


def test_a_correction_replaces_the_label_of_the_same_picture_in_place_even_re_encoded(fixture_dir, tmp_path):
    split = split_by_patient(scan_folder(fixture_dir), 0.25, 0.25, seed=0)
    target = next(e for e in split.test if e.class_name == "covid")
    other = next(e for e in split.train if e.class_name == "normal")
    corrections = tmp_path / "export"
    reencoded(target.path, corrections / "not_covid" / "a.png")
    reencoded(other.path, corrections / "not_covid" / "b.png")
    write_png(corrections / "covid" / "new-1.png", 11)
    write_png(corrections / "not_covid" / "new-2.png", 12)
    (corrections / "MANIFEST.csv").write_text(
        "file,patient_id,readers,pixel_sha256\n"
        "not_covid/a.png,,dr_a;dr_b,\n"
        f"not_covid/new-2.png,hospital:42,dr_c,{image_identity(corrections / 'not_covid' / 'new-2.png')}\n"
    )

    merged = merge_corrections(split, corrections)

    assert merged.corrections == CorrectionCounts(relabelled=1, confirmed=1, added=2, excluded=0)
    [corrected] = [e for part in merged.parts().values() for e in part if e.path == target.path]
    assert corrected in merged.test and (corrected.label, corrected.class_name) == (0, "not_covid")
    assert (corrected.patient_id, corrected.corrected_by) == (target.patient_id, ("dr_a", "dr_b"))
    assert len(merged.validation) == len(split.validation) and len(merged.test) == len(split.test)
    new = merged.train[len(split.train):]
    assert [(e.path.name, e.label, e.source, e.patient_id) for e in new] == [
        ("new-1.png", 1, "feedback", "feedback:covid/new-1.png"),
        ("new-2.png", 0, "feedback", "hospital:42"),
    ]
    assert "1 relabelled in place" in merged.corrections.describe()


def test_a_correction_of_an_evaluation_image_is_excluded_and_trains_nowhere(fixture_dir, tmp_path):
    external = tmp_path / "external"
    write_png(external / "covid" / "e1.png", 21)
    write_png(external / "normal" / "e2.png", 22)
    corrections = tmp_path / "export"
    reencoded(external / "covid" / "e1.png", corrections / "not_covid" / "x.png")
    split = split_by_patient(scan_folder(fixture_dir), 0.25, 0.25, seed=0)

    merged = merge_corrections(split, corrections, scan_folder(external))

    [kept_out] = merged.excluded
    assert (kept_out.path, kept_out.label) == (external / "covid" / "e1.png", 0)
    assert merged.corrections == CorrectionCounts(excluded=1)
    assert merged.parts() == split.parts() and EXCLUDED == "excluded"


def test_merge_corrections_rejects_missing_folder(fixture_dir, tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        merge_corrections(split_by_patient(scan_folder(fixture_dir)), tmp_path / "missing")


def test_dataset_summary(fixture_dir):
    examples = scan_folder(fixture_dir)
    summary = dataset_summary(examples)
    assert summary["images"] == 24
    assert (summary["positive"], summary["negative"]) == (10, 14)
    assert summary["classes"] == {"covid": 10, "normal": 8, "other_pneumonia": 6}
    assert summary["sources"] == {"hida6/covid-chestxray-dataset": 16,
                                  "rtchanon/Machine-Learning-for-COVID-19-detection-from-chest-X-RAYS": 8}
    assert summary["patients"] == 20
    assert dataset_summary(examples[::-1])["sha256"] == summary["sha256"]
    flipped = [Example(e.path, 1 - e.label, e.class_name, e.patient_id, e.source) for e in examples]
    assert dataset_summary(flipped)["sha256"] != summary["sha256"]
    assert dataset_summary(examples[1:])["sha256"] != summary["sha256"]


def test_make_dataset_batches_and_repeats(fixture_dir):
    examples = scan_folder(fixture_dir)[:5]
    plain = list(make_dataset(examples, size=32, batch_size=2).as_numpy_iterator())
    assert [x.shape for x, _ in plain] == [(2, 32, 32, 3), (2, 32, 32, 3), (1, 32, 32, 3)]
    assert all(x.dtype == np.float32 and y.dtype == np.float32 for x, y in plain)
    assert np.concatenate([y for _, y in plain]).ravel().tolist() == [float(e.label) for e in examples]
    assert all(y.shape[1:] == (1,) for _, y in plain)

    def first_batch(seed, shuffle):
        dataset = make_dataset(examples, size=32, batch_size=5, augment_images=True, shuffle=shuffle, seed=seed)
        return next(dataset.as_numpy_iterator())

    x_plain = np.concatenate([x for x, _ in plain])
    x_augmented, _ = first_batch(3, shuffle=False)
    assert x_augmented.shape == x_plain.shape
    assert np.abs(x_augmented - x_plain).mean() > 1.0
    x1, y1 = first_batch(3, shuffle=True)
    x2, y2 = first_batch(3, shuffle=True)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert sorted(y1.ravel().tolist()) == sorted(float(e.label) for e in examples)
