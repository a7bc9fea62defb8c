"""Durable store of radiologists' corrections, reader accounts and sign-in, and export for retraining."""

from feedback.export import export_corrections
from feedback.logins import Login, LoginFailed, LoginGuard, TooManyAttempts, check_login
from feedback.readers import check_reader, hash_password, load_readers
from feedback.store import (
    LABELS,
    Correction,
    DailyLimitReached,
    QuotaExceeded,
    Quotas,
    StoreFull,
    StoreUnwritable,
    add_correction,
    all_corrections,
    check_note,
    clean_reader,
    corrections_for,
    count_prediction,
    default_root,
    integrity_check,
    prediction_counts,
    store_problem,
)

__all__ = [
    "LABELS",
    "Correction",
    "DailyLimitReached",
    "Login",
    "LoginFailed",
    "LoginGuard",
    "QuotaExceeded",
    "Quotas",
    "StoreFull",
    "StoreUnwritable",
    "TooManyAttempts",
    "add_correction",
    "all_corrections",
    "check_login",
    "check_note",
    "check_reader",
    "clean_reader",
    "corrections_for",
    "count_prediction",
    "default_root",
    "export_corrections",
    "hash_password",
    "integrity_check",
    "load_readers",
    "prediction_counts",
    "store_problem",
]
