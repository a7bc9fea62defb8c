"""Statistics of corrections for reviewing readers: filters, model-vs-reader confusion, agreement between readers."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from feedback.export import latest_by_reader
from feedback.records import LABELS, Correction

MODEL_LABELS = ("positive", "negative")
UNVERIFIED_MARK = " (unverified)"


@dataclass(frozen=True)
class Agreement:
    """Chance-corrected agreement of readers on the images two or more of them labelled; kappa NaN when undefined."""

    method: str
    kappa: float
    images: int
    readers: int


@dataclass(frozen=True)
class VersionShare:
    """One model version: predictions shown, the distinct images it predicted and how many of them were corrected,
    and the corrections of its answers with the distinct images they concern (predicted here or not)."""

    model_version: str
    predictions: int
    corrections: int
    corrected_images: int
    predicted_images: int = 0
    corrected_predicted_images: int = 0

    @property
    def share(self) -> float | None:
        """Corrected predicted images / predicted images; None before any predicted image was noted."""
        return self.corrected_predicted_images / self.predicted_images if self.predicted_images else None


@dataclass(frozen=True)
class Summary:
    """What the Corrections tab reports about a set of corrections."""

    corrections: int
    images: int
    readers: int
    versions: tuple[VersionShare, ...]
    confusion: np.ndarray
    agreement: Agreement | None


def apart_by_verification(corrections: Iterable[Correction]) -> list[Correction]:
    """The corrections with each unverified one's reader marked " (unverified)" (a reader name cannot hold
    parentheses), so an open-mode flag under a reader's name is never counted, filtered or compared as theirs."""
    return [c if c.verified else dataclasses.replace(c, reader=c.reader + UNVERIFIED_MARK) for c in corrections]


def filter_corrections(corrections: Iterable[Correction], label: str | None = None, reader: str | None = None,
                       model_version: str | None = None) -> list[Correction]:
    """The corrections matching every filter given (None or "" matches all)."""
    return [c for c in corrections
            if (not label or c.correct_label == label) and (not reader or c.reader == reader)
            and (not model_version or c.model_version == model_version)]


def confusion(corrections: Iterable[Correction]) -> np.ndarray:
    """Counts with rows the reader's label (LABELS order) and columns the model's decision (MODEL_LABELS order)."""
    corrections = list(corrections)
    if not corrections:
        return np.zeros((len(LABELS), len(MODEL_LABELS)), dtype=int)
    matrix = confusion_matrix([c.correct_label for c in corrections], [c.predicted_label for c in corrections],
                              labels=list(LABELS))
    return matrix[:, : len(MODEL_LABELS)]


def cohen_kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa of two readers' labels of the same images; NaN when chance agreement is total."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(first, second, labels=list(LABELS)))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an images x labels count matrix (each image rated at least twice; counts may differ)."""
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(axis=1)
    per_image = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = counts.sum(axis=0) / raters.sum()
    chance = float((shares**2).sum())
    return float("nan") if chance >= 1.0 else (float(per_image.mean()) - chance) / (1.0 - chance)


def verdicts_by_image(corrections: Iterable[Correction]) -> list[dict[str, str]]:
    """Reader -> latest label, for each image that two or more readers labelled."""
    by_image: dict[str, list[Correction]] = {}
    for c in corrections:
        by_image.setdefault(c.identity, []).append(c)
    latest = (latest_by_reader(cs) for _, cs in sorted(by_image.items()))
    return [{reader: c.correct_label for reader, c in votes.items()} for votes in latest if len(votes) >= 2]


def agreement(corrections: Iterable[Correction]) -> Agreement | None:
    """Cohen's kappa when exactly two readers share images, Fleiss' kappa for more; None when no image has two."""
    verdicts = verdicts_by_image(corrections)
    if not verdicts:
        return None
    readers = sorted({reader for votes in verdicts for reader in votes})
    if len(readers) == 2:
        first, second = ([votes[reader] for votes in verdicts] for reader in readers)
        return Agreement("Cohen's kappa", cohen_kappa(first, second), len(verdicts), 2)
    counts = np.array([[list(votes.values()).count(label) for label in LABELS] for votes in verdicts])
    return Agreement("Fleiss' kappa", fleiss_kappa(counts), len(verdicts), len(readers))


def version_shares(corrections: list[Correction], prediction_counts: Mapping[str, int],
                   predicted: Mapping[str, set[str]] | None = None) -> tuple[VersionShare, ...]:
    """Each model version with predictions counted or corrections made, in version order; `predicted` holds the
    SHA-256 of the images each version predicted (feedback.store.predicted_images)."""
    predicted = predicted or {}
    versions = sorted(set(prediction_counts) | set(predicted) | {c.model_version for c in corrections})
    shares = []
    for version in versions:
        corrected = {c.image_sha256 for c in corrections if c.model_version == version}
        seen = predicted.get(version, set())
        shares.append(VersionShare(version, int(prediction_counts.get(version, 0)),
                                   sum(c.model_version == version for c in corrections), len(corrected),
                                   len(seen), len(corrected & seen)))
    return tuple(shares)


def summary(corrections: Iterable[Correction], prediction_counts: Mapping[str, int],
            predicted: Mapping[str, set[str]] | None = None) -> Summary:
    """Counts, share of predicted images corrected per model version, model-vs-reader confusion and reader agreement
    (these two over diagnoses only: a verdict on an input says nothing of COVID-19)."""
    corrections = list(corrections)
    diagnoses = [c for c in corrections if not c.about_input]
    return Summary(
        corrections=len(corrections),
        images=len({c.identity for c in corrections}),
        readers=len({c.reader for c in corrections}),
        versions=version_shares(corrections, prediction_counts, predicted),
        confusion=confusion(diagnoses),
        agreement=agreement(diagnoses),
    )
