"""The Space's endpoints as plain functions: decode and predict an upload, preview it, record a correction."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from feedback import (
    Login,
    LoginFailed,
    LoginGuard,
    QuotaExceeded,
    Quotas,
    StoreUnwritable,
    add_correction,
    check_login,
    corrections_for,
    store_problem,
)
from feedback.export import export_corrections
from feedback.review import apart_by_verification, filter_corrections
from feedback.review import summary as review_summary
from feedback.store import (
    Correction,
    all_corrections,
    count_prediction,
    predicted_images,
    prediction_counts,
)
from model.images import ImageError, image_identity, load_bytes, lossless_png, read_grey
from model.serving.batching import MAX_BATCH_SIZE, BatchingPredictor
from model.serving.cache import PredictionCache
from model.serving.gradcam import overlay
from model.serving.predictor import Prediction, Predictor
from model.serving.reload import ModelWatch
from space import presentation as show
from space.fairness import FairShare

log = logging.getLogger(__name__)
EXPORT_PREFIX = "xray-covid-export-"
EXPORT_KEEP_S = 3600
STORE_READ_ERRORS = (OSError, sqlite3.Error)


def refuse(message: str) -> gr.Error:
    """The error a user reads, without a traceback in the server's log (it is the user's mistake, not the app's)."""
    return gr.Error(message, print_exception=False)


def remove_old_exports(keep_s: float = EXPORT_KEEP_S) -> None:
    """Delete this app's export folders in the temporary directory that are older than keep_s seconds."""
    for folder in Path(tempfile.gettempdir()).glob(f"{EXPORT_PREFIX}*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and time.time() - folder.stat().st_mtime > keep_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def thumbnails(corrections: list[Correction]) -> list[tuple[np.ndarray, str]]:
    """Small grey copies of the stored images (the store's files are never served), captioned with their record."""
    made: dict[str, np.ndarray | None] = {}
    for c in corrections:
        if c.image_sha256 not in made:
            try:
                made[c.image_sha256] = show.preview(read_grey(c.image_path), show.THUMBNAIL_SIDE)
            except (ImageError, OSError):
                made[c.image_sha256] = None
    return [(made[c.image_sha256], f"#{c.id}") for c in corrections if made[c.image_sha256] is not None]


def trusted_proxies(environ: Mapping[str, str] = os.environ) -> int:
    """Proxies in front of the app that append to X-Forwarded-For: $XRAY_TRUSTED_PROXIES, else 1 on a Hugging
    Face Space (SPACE_ID set), else 0 (the header is then ignored: a client could write anything in it)."""
    text = environ.get("XRAY_TRUSTED_PROXIES", "").strip()
    if text.isdigit():
        return int(text)
    return 1 if environ.get("SPACE_ID") else 0


def forwarded_entries(request: gr.Request) -> list[str]:
    """Every X-Forwarded-For entry, left to right, across all the header's lines (a client can add lines too)."""
    headers = request.headers
    lines = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else [headers.get("x-forwarded-for", "")]
    return [e.strip() for line in lines for e in (line or "").split(",") if e.strip()]


def client_key(request: gr.Request | None, proxies: int | None = None) -> str | None:
    """Who is asking, for sign-in lockouts, quotas and fair shares: the X-Forwarded-For entry the nearest trusted
    proxy wrote (counted from the right, where a client cannot forge it), else the peer's address (app.launch turns
    off uvicorn's own rewriting of the peer from the header)."""
    if request is None:
        return None
    proxies = trusted_proxies() if proxies is None else proxies
    entries = forwarded_entries(request)
    if proxies and len(entries) >= proxies:
        return entries[-proxies][:100]
    return getattr(request.client, "host", None)


def model_said(prediction: Prediction) -> str:
    """What a correction records as the model's answer: positive, negative, or out_of_scope (no decision given)."""
    if not prediction.answered:
        return prediction.status
    return "positive" if prediction.positive else "negative"


@dataclass
class Handlers:
    """What each button and upload of the Space does; predictor None means no model is available.

    With `watch`, a model newly installed at model_path (python -m model.promote) replaces the loaded one between
    requests, with a prediction cache of its own (cached predictions are per model version).
    """

    predictor: Predictor | None
    feedback_root: Path
    readers: dict[str, str]
    model_path: Path
    network_slots: int = 1
    quotas: Quotas | None = None
    guard: LoginGuard = field(default_factory=LoginGuard)
    watch: bool = False
    cached: PredictionCache | None = field(init=False)
    batched: BatchingPredictor | None = field(init=False)
    watcher: ModelWatch | None = field(init=False, default=None)
    _swap: threading.Lock = field(init=False, default_factory=threading.Lock)

    fair: FairShare = field(init=False)

    def __post_init__(self) -> None:
        self.fair = FairShare(MAX_BATCH_SIZE)
        self.serve(self.predictor)
        if self.watch:
            self.watcher = ModelWatch(self.model_path, self.predictor.version if self.predictor else "")

    def serve(self, predictor: Predictor | None) -> None:
        """Answer from now on with this predictor, through a prediction cache and a batcher of its own."""
        cached = batched = None
        if predictor:
            cached = PredictionCache(predictor, preview_side=show.PREVIEW_SIDE, slots=self.network_slots)
            batched = BatchingPredictor(predictor)
        with self._swap:
            self.predictor, self.cached, self.batched = predictor, cached, batched

    def serving(self) -> tuple[PredictionCache | None, BatchingPredictor | None]:
        """The cache and batcher for this request, after swapping in a newly installed model if one is ready."""
        fresh = self.watcher.poll() if self.watcher else None
        if fresh is not None:
            self.serve(fresh)
        with self._swap:
            return self.cached, self.batched

    def read_and_predict(self, path: str | None, batched: bool = False) -> tuple[bytes, str, Prediction]:
        """The upload's bytes, SHA-256 and prediction (with concurrent predictions when batched); gr.Error if none."""
        cached, batcher = self.serving()
        if cached is None:
            raise refuse(f"No model is loaded. Create one with: {show.train_command(self.model_path)}")
        if not path:
            raise refuse("Upload a chest X-ray first.")
        try:
            data = load_bytes(path)
            return data, *cached(data, batcher.predict if batched else None)
        except ImageError as error:
            raise refuse(f"Cannot use {Path(path).name}: {error}") from None

    def predict(self, path: str | None, request: gr.Request = None):
        """COVID-19 probability, the decision at the model's threshold, a Grad-CAM overlay, and whether readers have
        reviewed this image (what they said is for signed-in readers only), then the input gate's status and reason
        and the model version; a refused input gets no probability, decision or overlay. Each client gets a fair
        share of the slots; nothing here needs the store to be writable."""
        if not path:
            gr.Warning("Upload a chest X-ray first.")
            return gr.skip()
        with self.fair.turn(client_key(request)):
            data, sha256, prediction = self.read_and_predict(path, batched=True)
        self.count_prediction(prediction.model_version, sha256)
        return (
            show.label_scores(prediction),
            show.decision_text(prediction, self.predictor.card.threshold_rule),
            overlay(show.preview(prediction.grey), prediction.heatmap, prediction.crop_box, prediction.grey.shape)
            if prediction.answered else None,
            show.public_corrections(self.stored_corrections(sha256)),
            prediction.status,
            prediction.reason,
            prediction.model_version,
        )

    def predict_new_file(self, path: str | None, request: gr.Request = None):
        return self.predict(path, request) if path else gr.skip()

    def stored_corrections(self, sha256: str) -> list[Correction]:
        """The image's corrections; none when the store cannot be read (logged: a prediction never fails for it)."""
        try:
            return corrections_for(self.feedback_root, sha256)
        except STORE_READ_ERRORS as error:
            log.warning("corrections not read from %s: %s", self.feedback_root, error)
            return []

    def store_notice(self) -> str:
        """The page's notice when flagging is unavailable because the store cannot be written now; else nothing."""
        problem = store_problem(self.feedback_root)
        return show.flagging_unavailable(problem) if problem else ""

    def show_file(self, path: str | None):
        """Preview the new file and clear the previous result."""
        try:
            image = show.preview(read_grey(path)) if path else None
        except ImageError:
            image = None
        return image, {}, "", None, show.corrections_table([]), "", "", "", ""

    def sign_in(self, reader: str, password: str, request: gr.Request | None) -> Login:
        """The reader allowed to flag (verified with accounts, unverified in open mode); a gr.Error otherwise."""
        try:
            return check_login(self.readers, self.guard, reader, password, client_key(request))
        except LoginFailed as error:
            message = str(error) if self.readers else f"Enter your name to flag a prediction: {error}"
            raise refuse(message) from None

    def flag(self, path: str | None, correct_label: str, reader: str, password: str, note: str,
             request: gr.Request = None):
        """Record a reader's correction of the model's answer for this image; returns the record id in words and the
        image's corrections (with accounts: all of them; in open mode: only the one just made)."""
        login = self.sign_in(reader, password, request)
        problem = store_problem(self.feedback_root)
        if problem:
            raise refuse(show.not_stored(f"the corrections store cannot be written: {problem}"))
        data, sha256, prediction = self.read_and_predict(path)
        try:
            record_id, created = add_correction(
                self.feedback_root, lossless_png(data), Path(path).name, correct_label, login.reader, note or "",
                model_said(prediction), prediction.probability if prediction.answered else 0.0, prediction.model_version,
                verified=login.verified, image_sha256=sha256, extension=".png", quotas=self.quotas,
                pixel_sha256=image_identity(data), client=client_key(request),
            )
        except ImageError as error:
            raise refuse(f"Cannot use {Path(path).name}: {error}") from None
        except StoreUnwritable as error:
            log.error("correction not stored in %s: %r", self.feedback_root, error.__cause__ or error)
            raise refuse(show.not_stored(str(error))) from None
        except QuotaExceeded as error:
            raise refuse(f"Not stored: {error}") from None
        except ValueError as error:
            raise refuse(str(error)) from None
        shown = self.stored_corrections(sha256)
        if not self.readers:
            shown = [c for c in shown if c.id == record_id]
        return (show.flag_confirmation(record_id, created, correct_label, login.verified),
                show.corrections_table(shown))

    def count_prediction(self, model_version: str, image_sha256: str) -> None:
        """Count one prediction of this image shown for this model version; a store that cannot be written is only
        logged, so counting never fails a prediction."""
        try:
            count_prediction(self.feedback_root, model_version, image_sha256)
        except (OSError, sqlite3.Error, ValueError) as error:
            log.warning("prediction not counted in %s: %s", self.feedback_root, error)

    def review_sign_in(self, reader: str, password: str, request: gr.Request | None) -> Login:
        """A reader signed in with an account, for the Corrections tab; a gr.Error in open mode or otherwise."""
        if not self.readers:
            raise refuse("Reviewing corrections needs reader accounts (XRAY_READERS); this Space has none.")
        return self.sign_in(reader, password, request)

    def review(self, reader: str, password: str, label: str | None, by_reader: str | None, version: str | None,
               request: gr.Request = None):
        """The Corrections tab for a signed-in reader: the filtered corrections, thumbnails, summary, filter choices."""
        self.review_sign_in(reader, password, request)
        stored = apart_by_verification(all_corrections(self.feedback_root))
        filters = (None if value in (None, "", show.ALL) else value for value in (label, by_reader, version))
        chosen = filter_corrections(stored, *filters)
        newest = chosen[::-1][: show.MAX_REVIEW_ROWS]
        summary = review_summary(chosen, prediction_counts(self.feedback_root), predicted_images(self.feedback_root))
        return (
            show.review_status(len(newest), len(chosen)), show.review_table(newest), thumbnails(newest),
            show.review_counts(summary), show.version_table(summary), show.confusion_table(summary),
            gr.update(choices=[show.ALL, *sorted({c.reader for c in stored})]),
            gr.update(choices=[show.ALL, *sorted({c.model_version for c in stored})]),
        )

    def review_export(self, reader: str, password: str, request: gr.Request = None) -> str:
        """For a signed-in reader, the labelled folder `python -m feedback export` writes, as a zip file."""
        self.review_sign_in(reader, password, request)
        remove_old_exports()
        folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))
        try:
            export_corrections(self.feedback_root, folder / "corrections")
            return shutil.make_archive(str(folder / "xray-covid-corrections"), "zip", folder / "corrections")
        except (OSError, ValueError, sqlite3.Error) as error:
            log.error("export of %s failed: %r", self.feedback_root, error)
            raise refuse("Export failed: the store could not be read or the export could not be written "
                         "(the server's log says which file).") from None
        finally:
            shutil.rmtree(folder / "corrections", ignore_errors=True)
