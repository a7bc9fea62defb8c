"""Turn stored corrections into a labelled image folder (covid/, not_covid/, MANIFEST.csv) for training."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

from feedback.store import Correction, all_corrections

FOLDERS = {"positive": "covid", "negative": "not_covid"}
MANIFEST_COLUMNS = ("file", "label", "patient_id", "source", "sha256", "readers", "n_corrections")
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
    """Each reader's latest correction among these (of one image)."""
    latest: dict[str, Correction] = {}
    for c in sorted(corrections, key=_recency):
        latest[c.reader] = c
    return latest


def consensus_label(corrections: list[Correction]) -> str:
    """One image's label: each reader's latest verdict is a vote, the majority wins, a tie goes to the most recent."""
    latest = latest_by_reader(corrections)
    votes = Counter(c.correct_label for c in latest.values())
    top = max(votes.values())
    return max((c for c in latest.values() if votes[c.correct_label] == top), key=_recency).correct_label


def export_corrections(root: str | Path, out: str | Path, include_unverified: bool = False) -> dict:
    """Write each corrected image into <out>/covid or <out>/not_covid by consensus, plus MANIFEST.csv; return counts.

    Images whose consensus is "uncertain" are skipped, and so are images whose stored file is missing (counted in
    `missing_images`, so one lost file does not stop the export); unverified flags (made without signing in) are left out
    unless `include_unverified`. `out` must be missing or empty.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"export folder {out} already exists and is not empty; choose a new one")
    stored = all_corrections(root)
    by_image: dict[str, list[Correction]] = {}
    for c in stored:
        if c.verified or include_unverified:
            by_image.setdefault(c.image_sha256, []).append(c)

    used = sum(len(cs) for cs in by_image.values())
    counts = {"corrections": used, "images": len(by_image), "covid": 0, "not_covid": 0, "skipped_uncertain": 0,
              "left_out_unverified": len(stored) - used, "missing_images": 0}
    rows = []
    for sha256, corrections in sorted(by_image.items()):
        label = consensus_label(corrections)
        if label not in FOLDERS:
            counts["skipped_uncertain"] += 1
            continue
        source = Path(corrections[0].image_path)
        if not source.is_file():
            counts["missing_images"] += 1
            continue
        folder = FOLDERS[label]
        (out / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / folder / source.name)
        counts[folder] += 1
        rows.append({
            "file": f"{folder}/{source.name}",
            "label": folder,
            "patient_id": f"feedback:{sha256}",
            "source": "feedback",
            "sha256": sha256,
            "readers": ";".join(sorted({c.reader for c in corrections})),
            "n_corrections": len(corrections),
        })

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "MANIFEST.csv", MANIFEST_COLUMNS, rows)
    return counts
