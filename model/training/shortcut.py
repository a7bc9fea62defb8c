"""The shortcut audit: how well a model that sees only file facts (size, mode, format) separates the classes.

A data set that file facts alone can solve rewards shortcuts; the audit's AUC is printed beside the
model's in every evaluation report, overall and per source, with the same patient-grouped folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from model.data import Example

FACTS = ("width", "height", "aspect", "megapixels", "bytes_per_pixel", "channels", "bits", "is_jpeg", "is_png",
         "is_dicom", "is_grey")
MODE_CHANNELS = {"1": 1, "L": 1, "P": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}
MODE_BITS = {"1": 1, "I;16": 16, "I": 32, "F": 32}


def file_facts(path: Path) -> list[float]:
    """The FACTS of one file, read from its header and size only (never its pixels)."""
    size = Path(path).stat().st_size
    try:
        with Image.open(path) as image:
            (width, height), mode, kind = image.size, image.mode, image.format or ""
    except (OSError, ValueError, SyntaxError):
        width, height, mode, kind = 0, 0, "", "DICOM"
    pixels = max(width * height, 1)
    return [width, height, width / max(height, 1), pixels / 1e6, size / pixels, MODE_CHANNELS.get(mode, 0),
            MODE_BITS.get(mode, 8), kind == "JPEG", kind == "PNG", kind == "DICOM", mode in ("L", "I;16", "I")]


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: Sequence[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each image's probability from a file-facts model fitted on the other patients' folds."""
    probs = np.full(len(y), np.nan)
    n_folds = min(folds, len(set(groups)), int(min(np.bincount(y.astype(int), minlength=2))))
    if n_folds < 2:
        return probs
    for train, held in StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(x, y, groups):
        if len(np.unique(y[train])) < 2:
            continue
        model = HistGradientBoostingClassifier(max_depth=3, max_iter=100, min_samples_leaf=3, random_state=seed).fit(x[train], y[train])
        probs[held] = model.predict_proba(x[held])[:, 1]
    return probs


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    ok = np.isfinite(p)
    return float(roc_auc_score(y[ok], p[ok])) if ok.any() and len(np.unique(y[ok])) == 2 else None


def shortcut_audit(examples: Sequence[Example], model_probs: np.ndarray | None = None, seed: int = 0) -> dict:
    """File-facts AUC (out of fold, grouped by patient) beside the model's AUC, overall and per source."""
    y = np.array([e.label for e in examples], dtype=int)
    x = np.array([file_facts(e.path) for e in examples], dtype="float64")
    facts_probs = out_of_fold(x, y, [e.patient_id for e in examples], seed=seed)
    sources = np.array([e.source for e in examples])
    rows = {"all": (y, facts_probs, model_probs)}
    for source in sorted(set(sources)):
        mask = sources == source
        rows[source] = (y[mask], facts_probs[mask], None if model_probs is None else model_probs[mask])
    return {name: {"n": int(len(ys)), "file_facts_auc": _auc(ys, fp), "model_auc": None if mp is None else _auc(ys, mp)}
            for name, (ys, fp, mp) in rows.items()}
