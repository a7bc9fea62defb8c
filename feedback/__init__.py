"""Durable store of radiologists' corrections to the classifier, reader accounts, and export for retraining."""

from feedback.export import export_corrections
from feedback.readers import check_reader, hash_password, load_readers
from feedback.store import (
    LABELS,
    Correction,
    add_correction,
    all_corrections,
    corrections_for,
    default_root,
    integrity_check,
)

__all__ = [
    "LABELS",
    "Correction",
    "add_correction",
    "all_corrections",
    "check_reader",
    "corrections_for",
    "default_root",
    "export_corrections",
    "hash_password",
    "integrity_check",
    "load_readers",
]
