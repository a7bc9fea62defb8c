"""Turn stored corrections into a labelled image folder (covid/, not_covid/, MANIFEST.csv) for training, and the
readers' verdicts on inputs into a folder of their own for the input check (in_scope/, out_of_scope/, MANIFEST.csv)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from feedback.records import Correction, Store
from handoff import (
    DIAGNOSIS_FOLDERS,
    FEEDBACK_SOURCE,
    IDENTITY_COLUMN,
    INPUT_FOLDERS,
    INPUT_MANIFEST_COLUMNS,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    READERS_COLUMN,
)

FOLDERS = DIAGNOSIS_FOLDERS
SCOPE_FOLDERS = INPUT_FOLDERS
RULE = ("each reader's latest correction of an image is their verdict (none once they withdraw it); the majority "
        "of verdicts wins, a tie goes to the most recent; an image whose result is uncertain keeps its label")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> str:
    """The cell as text, with a leading ' when a spreadsheet would otherwise run it as a formula."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Write rows as CSV with every cell neutralised against spreadsheet formula injection."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: csv_safe(value) for key, value in row.items()} for row in rows)


def _recency(c: Correction) -> tuple[str, int]:
    return c.created_at, c.id


def latest_by_reader(corrections: list[Correction]) -> dict[str, Correction]:
    """Each reader's latest correction among these (of one image), left out where that latest one is withdrawn."""
    latest: dict[str, Correction] = {}
    for c in sorted(corrections, key=_recency):
        latest[c.reader] = c
    return {reader: c for reader, c in latest.items() if not c.withdrawn_at}


def consensus_label(corrections: list[Correction]) -> str | None:
    """One image's label by RULE; None when every reader has withdrawn their verdict."""
    latest = latest_by_reader(corrections)
    if not latest:
        return None
    votes = Counter(c.correct_label for c in latest.values())
    top = max(votes.values())
    return max((c for c in latest.values() if votes[c.correct_label] == top), key=_recency).correct_label


def scope_folder(out: str | Path) -> Path:
    """Where the export puts the verdicts on inputs beside a labelled folder `out`: the sibling `<out>-gate`."""
    out = Path(out)
    return out.with_name(out.name + "-gate")


def _new_folder(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"export folder {out} already exists and is not empty; choose a new one")


def _by_image(corrections: Iterable[Correction]) -> dict[str, list[Correction]]:
    by_image: dict[str, list[Correction]] = {}
    for c in corrections:
        by_image.setdefault(c.identity, []).append(c)
    return by_image


def _written(store: Store, by_image: Mapping[str, list[Correction]], folders: Mapping[str, str], out: Path,
             counts: dict) -> Iterator[tuple[str, str, list[Correction]]]:
    """Write each image whose consensus has a folder into it, yielding (folder, file name, corrections); count those
    skipped (uncertain, withdrawn) or missing, and those written per folder."""
    for _, corrections in sorted(by_image.items()):
        label = consensus_label(corrections)
        if label not in folders:
            counts["skipped_withdrawn" if label is None else "skipped_uncertain"] += 1
            continue
        image = store.image_bytes(corrections[0])
        if image is None:
            counts["missing_images"] += 1
            continue
        folder, name = folders[label], corrections[0].image_name
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / name).write_bytes(image)
        counts[folder] += 1
        yield folder, name, corrections


def _identity_columns(corrections: list[Correction]) -> dict:
    """The manifest columns naming an image and who stands by its verdict."""
    return {
        "sha256": corrections[0].image_sha256,
        IDENTITY_COLUMN: next((c.pixel_sha256 for c in corrections if c.pixel_sha256), ""),
        READERS_COLUMN: ";".join(sorted(latest_by_reader(corrections))),
        "n_corrections": len(corrections),
    }


def export_corrections(store: Store, out: str | Path, include_unverified: bool = False,
                       scope_out: str | Path | None = None) -> dict:
    """Write each corrected image into <out>/covid or <out>/not_covid by consensus, plus MANIFEST.csv; return counts.

    Images whose consensus is "uncertain" (or whose every verdict is withdrawn) are skipped, and so are images whose
    stored copy is missing (counted in `missing_images`, so one lost file does not stop the export); unverified flags
    (made without signing in) are left out unless `include_unverified`. Verdicts on inputs (in_scope, out_of_scope:
    corrections of the input check, never labels for the model) are kept apart: counted, and written by the same rule
    into `scope_out` (in_scope/, out_of_scope/, MANIFEST.csv) when it is given and there are any. Each folder must be
    missing or empty.
    """
    out = Path(out)
    _new_folder(out)
    if scope_out is not None:
        _new_folder(Path(scope_out))
    stored = store.all()
    usable = [c for c in stored if c.verified or include_unverified]
    by_image = _by_image(c for c in usable if not c.about_input)
    on_inputs = _by_image(c for c in usable if c.about_input)

    counts = {"corrections": sum(len(cs) for cs in by_image.values()), "images": len(by_image), "covid": 0,
              "not_covid": 0, "skipped_uncertain": 0, "skipped_withdrawn": 0,
              "left_out_unverified": len(stored) - len(usable), "missing_images": 0,
              "input_verdicts": sum(len(cs) for cs in on_inputs.values()), "in_scope": 0, "out_of_scope": 0}
    rows = [{"file": f"{folder}/{name}", "label": folder, "patient_id": f"feedback:{corrections[0].image_sha256}",
             "source": FEEDBACK_SOURCE, **_identity_columns(corrections)}
            for folder, name, corrections in _written(store, by_image, FOLDERS, out, counts)]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / MANIFEST_NAME, MANIFEST_COLUMNS, rows)

    if scope_out is not None and on_inputs:
        scope_out = Path(scope_out)
        rows = [{"file": f"{folder}/{name}", "label": folder,
                 "model_said": ";".join(sorted({c.predicted_label for c in corrections})),
                 **_identity_columns(corrections)}
                for folder, name, corrections in _written(store, on_inputs, SCOPE_FOLDERS, scope_out, counts)]
        scope_out.mkdir(parents=True, exist_ok=True)
        write_csv(scope_out / MANIFEST_NAME, INPUT_MANIFEST_COLUMNS, rows)
    return counts
