"""Copy an SQLite corrections store into a PostgreSQL one (`python -m feedback migrate --to postgresql://...`) and
check that the copy holds exactly what the source does."""

from __future__ import annotations

import dataclasses
from collections import Counter

from feedback.postgres_store import PostgresStore
from feedback.records import Correction
from feedback.store import CorrectionStore, read_tables


def _as_stored(corrections: list[Correction]) -> list[Correction]:
    """The corrections with the image addressed by its stored name, as any store names it."""
    return [dataclasses.replace(c, image_path=c.image_name) for c in corrections]


def _tally(store: CorrectionStore | PostgresStore) -> dict:
    """What a copy must keep: the corrections (ids, verdicts, readers, times), the images, the prediction counts."""
    corrections = store.all()
    images = {c.image_sha256: store.image_bytes(c) for c in corrections}
    return {
        "corrections": _as_stored(corrections),
        "verdicts": Counter(c.correct_label for c in corrections),
        "images": {sha256: data for sha256, data in images.items() if data is not None},
        "prediction_counts": store.prediction_counts(),
        "predicted_images": store.predicted_images(),
    }


def migrate(source: CorrectionStore, target: PostgresStore) -> dict[str, int]:
    """Copy every correction (ids kept, with its reader, client hash, verdict, times and withdrawal), each stored
    image, the prediction counts and the predicted images from `source` into the empty `target`, in one
    transaction; then read both back and compare. Returns the counts copied; ValueError when the target is not
    empty or the copy differs from the source (the source is only read)."""
    if not source.exists():
        raise ValueError(f"no feedback store at {source.location}")
    tables = read_tables(source.folder)
    corrections = source.all()
    images: dict[str, tuple[str, bytes]] = {}
    for c in corrections:
        if c.image_sha256 not in images and (data := source.image_bytes(c)) is not None:
            images[c.image_sha256] = (c.image_name, data)
    target.load(tables, images)
    before, after = _tally(source), _tally(target)
    differ = [name for name in before if before[name] != after[name]]
    if differ:
        raise ValueError(f"the copy at {target.location} differs from {source.location} in: {', '.join(differ)}")
    return {"corrections": len(corrections), "images": len(images),
            "missing_images": len({c.image_sha256 for c in corrections}) - len(images),
            "input_verdicts": sum(c.about_input for c in corrections),
            "predictions": sum(before["prediction_counts"].values()),
            "predicted_images": sum(len(shas) for shas in before["predicted_images"].values())}
