"""Turn stored corrections into a labelled image folder (covid/, not_covid/, MANIFEST.csv) for training."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from feedback.store import Correction, CorrectionStore

FOLDERS = {"positive": "covid", "negative": "not_covid"}
MANIFEST_COLUMNS = ("file", "label", "patient_id", "source", "sha256", "pixel_sha256", "readers", "n_corrections")
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


def export_corrections(store: CorrectionStore, out: str | Path, include_unverified: bool = False) -> dict:
    """Write each corrected image into <out>/covid or <out>/not_covid by consensus, plus MANIFEST.csv; return counts.

    Images whose consensus is "uncertain" (or whose every verdict is withdrawn) are skipped, and so are images whose
    stored copy is missing (counted in `missing_images`, so one lost file does not stop the export); unverified flags
    (made without signing in) are left out unless `include_unverified`. `out` must be missing or empty.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"export folder {out} already exists and is not empty; choose a new one")
    stored = store.all()
    by_image: dict[str, list[Correction]] = {}
    for c in stored:
        if c.verified or include_unverified:
            by_image.setdefault(c.identity, []).append(c)

    used = sum(len(cs) for cs in by_image.values())
    counts = {"corrections": used, "images": len(by_image), "covid": 0, "not_covid": 0, "skipped_uncertain": 0,
              "skipped_withdrawn": 0, "left_out_unverified": len(stored) - used, "missing_images": 0}
    rows = []
    for identity, corrections in sorted(by_image.items()):
        label = consensus_label(corrections)
        if label not in FOLDERS:
            counts["skipped_withdrawn" if label is None else "skipped_uncertain"] += 1
            continue
        standing = list(latest_by_reader(corrections).values())
        sha256 = corrections[0].image_sha256
        image = store.image_bytes(corrections[0])
        if image is None:
            counts["missing_images"] += 1
            continue
        folder, name = FOLDERS[label], Path(corrections[0].image_path).name
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / name).write_bytes(image)
        counts[folder] += 1
        rows.append({
            "file": f"{folder}/{name}",
            "label": folder,
            "patient_id": f"feedback:{sha256}",
            "source": "feedback",
            "sha256": sha256,
            "pixel_sha256": next((c.pixel_sha256 for c in corrections if c.pixel_sha256), ""),
            "readers": ";".join(sorted(c.reader for c in standing)),
            "n_corrections": len(corrections),
        })

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "MANIFEST.csv", MANIFEST_COLUMNS, rows)
    return counts
