"""Durable store of radiologists' corrections, reader accounts and sign-in, and export for retraining."""

from feedback.export import export_corrections
from feedback.logins import Login, LoginFailed, LoginGuard, TooManyAttempts, check_login
from feedback.readers import check_reader, hash_password, load_readers
from feedback.records import Store
from feedback.store import (
    LABELS,
    SCOPE_LABELS,
    Correction,
    CorrectionStore,
    DailyLimitReached,
    QuotaExceeded,
    Quotas,
    StoreFull,
    StoreUnreadable,
    StoreUnwritable,
    check_note,
    clean_reader,
)
from feedback.stores import open_store

__all__ = [
    "LABELS",
    "SCOPE_LABELS",
    "Correction",
    "CorrectionStore",
    "DailyLimitReached",
    "Login",
    "LoginFailed",
    "LoginGuard",
    "QuotaExceeded",
    "Quotas",
    "Store",
    "StoreFull",
    "StoreUnreadable",
    "StoreUnwritable",
    "TooManyAttempts",
    "check_login",
    "check_note",
    "check_reader",
    "clean_reader",
    "export_corrections",
    "hash_password",
    "load_readers",
    "open_store",
]
