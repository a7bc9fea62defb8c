"""Labelled examples from an image folder: scanning, patient-grouped splits, corrections and a tf.data pipeline.

`python -m model.data` (model/data/__main__.py) writes the examples as training will use them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from handoff import FEEDBACK_SOURCE, IDENTITY_COLUMN, MANIFEST_NAME, READERS_COLUMN
from model.config import DEFAULT_POSITIVE_FOLDERS
from model.images import EXTENSIONS, ImageError, file_sha256, image_identity
from model.preprocessing import Preprocessing, to_network_input

SKIPPED_FOLDERS = frozenset({"masks"})
ORIGIN_COLUMN = "origin"
SOURCE_COLUMNS = ("source", "source_repo", ORIGIN_COLUMN)
EXCLUDED = "excluded"


@dataclass(frozen=True)
class Example:
    """One labelled image: label 1 is COVID-19 positive, 0 negative; `origin` is the hospital or publication it
    came from (the manifest's `origin` column), empty where unknown."""

    path: Path
    label: int
    class_name: str
    patient_id: str
    source: str
    corrected_by: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class CorrectionCounts:
    """What merging a corrections folder did to a split."""

    relabelled: int = 0
    confirmed: int = 0
    added: int = 0
    excluded: int = 0

    def describe(self) -> str:
        """The counts in one sentence."""
        return (f"corrections: {self.relabelled} relabelled in place and {self.confirmed} confirmed (same patient, "
                f"same split), {self.added} of images found nowhere in the data added to train as their own "
                f"patients, {self.excluded} excluded (they correct images of an evaluation folder, which never "
                "trains)")


@dataclass(frozen=True)
class Split:
    """Train, validation and test examples; `excluded` are corrections kept out of training, with what merging
    corrections did in `corrections` (None when no corrections folder was merged)."""

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    excluded: list[Example] = field(default_factory=list)
    corrections: CorrectionCounts | None = None

    def parts(self) -> dict[str, list[Example]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def scan_folder(
    root: str | Path,
    positive: Sequence[str] = DEFAULT_POSITIVE_FOLDERS,
    source_column: str | None = None,
    require_both: bool = True,
) -> list[Example]:
    """Examples from `root/<class folder>/**/<image>`, labelled positive where the class folder is in `positive`.

    An optional root/MANIFEST.csv (its `file` column is the path relative to root) gives each image's
    `patient_id` (empty: the image is its own patient) and its source (`source_column`, else the first
    of source, source_repo, origin that the manifest has; else the class folder name).
    """
    examples = _scan(Path(root), positive, source_column)
    labels = {e.label for e in examples}
    if require_both and labels != {0, 1}:
        missing = "positive" if 1 not in labels else "negative"
        raise ValueError(
            f"{root}: no {missing} class; positive class folders are {list(positive)}, "
            f"found {sorted({e.class_name for e in examples})}"
        )
    return examples


def _scan(root: Path, positive: Sequence[str], source_column: str | None) -> list[Example]:
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root}: no class sub-folders (expected one folder per class, e.g. covid/ and normal/)")
    manifest, column = _read_manifest(root, source_column)
    examples = []
    for class_dir in class_dirs:
        for path in image_files(class_dir):
            relative = path.relative_to(root).as_posix()
            row = manifest.get(relative, {})
            examples.append(Example(
                path=path,
                label=int(class_dir.name in positive),
                class_name=class_dir.name,
                patient_id=row.get("patient_id") or relative,
                source=(row.get(column) if column else None) or class_dir.name,
                origin=(row.get(ORIGIN_COLUMN) or "").strip(),
            ))
    if not examples:
        suffixes = ", ".join(EXTENSIONS)
        raise ValueError(f"{root}: no images ({suffixes}) in {[d.name for d in class_dirs]}")
    return examples


def image_files(folder: Path) -> list[Path]:
    """Image files (EXTENSIONS) under folder, recursively, without hidden files and masks/ folders, sorted."""
    def wanted(path: Path) -> bool:
        parts = path.relative_to(folder).parts
        return (
            path.suffix.lower() in EXTENSIONS
            and not any(part.startswith(".") for part in parts)
            and not any(part.lower() in SKIPPED_FOLDERS for part in parts[:-1])
            and path.is_file()
        )

    return sorted(p for p in folder.rglob("*") if wanted(p))


def _read_manifest(root: Path, source_column: str | None) -> tuple[dict[str, dict[str, str]], str | None]:
    """Rows of root/MANIFEST.csv by relative file path, and the column that names the source."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        if source_column:
            raise ValueError(f"{root}: source_column={source_column!r} given but there is no {MANIFEST_NAME}")
        return {}, None
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "file" not in columns:
            raise ValueError(f"{path}: no 'file' column (found {columns})")
        if source_column and source_column not in columns:
            raise ValueError(f"{path}: no column {source_column!r} (found {columns})")
        rows = {Path(row["file"]).as_posix(): row for row in reader}
    column = source_column or next((c for c in SOURCE_COLUMNS if c in columns), None)
    return rows, column


def split_by_patient(
    examples: Sequence[Example],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> Split:
    """Train/validation/test split that never puts one patient in two parts, stratified by label.

    Each held-out part is one fold of scikit-learn's StratifiedGroupKFold, so its size is about the
    fraction asked (1/round(1/fraction) of the patients); GroupShuffleSplit is used instead when a
    class has fewer patients than folds.
    """
    if not examples:
        raise ValueError("no examples to split")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be under 1, got {val_fraction + test_fraction}")
    rest, test = _hold_out(list(examples), test_fraction, seed)
    train, validation = _hold_out(rest, val_fraction / (1 - test_fraction), seed)
    return Split(train, validation, test)


def _hold_out(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split off about `fraction` of the patients; returns (rest, held_out)."""
    if fraction == 0:
        return examples, []
    labels = [e.label for e in examples]
    groups = [e.patient_id for e in examples]
    if len(set(groups)) < 2:
        raise ValueError(f"cannot split {len(examples)} images of one patient into parts by patient")
    n_splits = max(2, round(1 / fraction))
    fewest_patients = min(len({e.patient_id for e in examples if e.label == label}) for label in set(labels))
    if fewest_patients >= n_splits:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    rest, held_out = next(splitter.split(np.zeros(len(examples)), labels, groups))
    return [examples[i] for i in rest], [examples[i] for i in held_out]


def describe_split(split: Split) -> str:
    """A table of images and patients per split and class."""
    lines = [f"{'split':<11} {'class':<18} {'images':>6} {'patients':>8}"]
    for name, part in split.parts().items():
        by_class: dict[str, list[Example]] = {}
        for e in part:
            by_class.setdefault(e.class_name, []).append(e)
        rows = [*sorted(by_class.items()), ("(all)", part)]
        for class_name, members in rows:
            patients = len({e.patient_id for e in members})
            lines.append(f"{name:<11} {class_name:<18} {len(members):>6} {patients:>8}")
    return "\n".join(lines)


def merge_corrections(split: Split, corrections_root: str | Path, evaluation: Sequence[Example] = ()) -> Split:
    """Merge an exported corrections folder (a labelled folder: covid/ positive, MANIFEST.csv) into a split drawn
    from the uncorrected labels.

    A correction is matched to examples by image identity (model.images.image_identity: the manifest's
    pixel_sha256, else computed from the file). A correction of an `evaluation` image (e.g. the --external folder)
    never enters training: it is listed in `excluded`. One of an example of the split replaces that example's label
    in place (same patient, same split, once). Any other is added to train as a new example, its own patient.
    """
    root = Path(corrections_root)
    corrections = _scan_corrections(root)
    evaluated = _by_identity(list(evaluation))
    parts = {name: list(part) for name, part in split.parts().items()}
    where = {identity: [(name, i) for name, i, _ in places]
             for identity, places in _by_identity_in(parts).items()}
    excluded, added, counts = list(split.excluded), [], Counter()
    for identity, correction in corrections.items():
        if identity in evaluated:
            excluded += [_relabel(e, correction) for e in evaluated[identity]]
            counts["excluded"] += 1
        elif identity in where:
            for name, i in where[identity]:
                counts["relabelled" if parts[name][i].label != correction.label else "confirmed"] += 1
                parts[name][i] = _relabel(parts[name][i], correction)
        else:
            own_patient = correction.patient_id == correction.path.relative_to(root).as_posix()
            patient_id = f"{FEEDBACK_SOURCE}:{correction.patient_id}" if own_patient else correction.patient_id
            added.append(dataclasses.replace(correction, source=FEEDBACK_SOURCE, patient_id=patient_id))
            counts["added"] += 1
    return Split(parts["train"] + added, parts["validation"], parts["test"], excluded, CorrectionCounts(**counts))


def _relabel(example: Example, correction: Example) -> Example:
    return dataclasses.replace(example, label=correction.label, class_name=correction.class_name,
                               corrected_by=correction.corrected_by)


def _scan_corrections(root: Path) -> dict[str, Example]:
    """The corrections folder's examples by image identity, each with the readers its manifest names."""
    examples = _scan(root, DEFAULT_POSITIVE_FOLDERS, None)
    rows, _ = _read_manifest(root, None)
    corrections = {}
    for example in examples:
        row = rows.get(example.path.relative_to(root).as_posix(), {})
        readers = tuple(r for r in (row.get(READERS_COLUMN) or "").split(";") if r)
        identity = row.get(IDENTITY_COLUMN) or image_identity(example.path)
        corrections[identity] = dataclasses.replace(example, corrected_by=readers)
    return corrections


def _by_identity(examples: list[Example]) -> dict[str, list[Example]]:
    """Examples by image identity; files that cannot be decoded have none (training reports them)."""
    return {identity: [e for _, _, e in places] for identity, places in _by_identity_in({"": examples}).items()}


def _by_identity_in(parts: dict[str, list[Example]]) -> dict[str, list[tuple[str, int, Example]]]:
    """(part name, index, example) of every decodable example of the parts, by image identity."""
    found: dict[str, list[tuple[str, int, Example]]] = {}
    for name, part in parts.items():
        for i, example in enumerate(part):
            try:
                found.setdefault(image_identity(example.path), []).append((name, i, example))
            except ImageError:
                continue
    return found


def dataset_summary(examples: Sequence[Example]) -> dict:
    """Counts per class and source, and a SHA-256 that identifies the exact images and labels."""
    hashes = sorted(f"{file_sha256(e.path)} {e.label}" for e in examples)
    return {
        "images": len(examples),
        "patients": len({e.patient_id for e in examples}),
        "positive": sum(e.label for e in examples),
        "negative": sum(1 - e.label for e in examples),
        "classes": dict(sorted(Counter(e.class_name for e in examples).items())),
        "sources": dict(sorted(Counter(e.source for e in examples).items())),
        "sha256": hashlib.sha256("\n".join(hashes).encode()).hexdigest(),
    }


def make_dataset(
    examples: Sequence[Example],
    size: int | Preprocessing,
    batch_size: int,
    augment_images: bool = False,
    shuffle: bool = False,
    seed: int = 0,
):
    """A tf.data.Dataset of (float32 network input, float32 (1,) label) batches; `size` may be a full Preprocessing.

    Shuffling and augmentation draw from one generator seeded with `seed`, so each epoch differs but a
    run is repeatable.
    """
    import tensorflow as tf

    from model.augment import augment
    from model.images import read_grey

    if not examples:
        raise ValueError("no examples to make a dataset from")
    rng = np.random.default_rng(seed)

    def generate():
        order = rng.permutation(len(examples)) if shuffle else range(len(examples))
        for i in order:
            grey = read_grey(examples[i].path)
            if augment_images:
                grey = augment(grey, rng)
            yield to_network_input(grey, size), np.array([examples[i].label], dtype="float32")

    side = size.size if isinstance(size, Preprocessing) else size
    signature = (tf.TensorSpec((side, side, 3), tf.float32), tf.TensorSpec((1,), tf.float32))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
