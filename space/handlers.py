"""The Space's endpoints as plain functions: decode and predict an upload, preview it, record a correction."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from PIL import Image

import settings
from feedback import (
    SCOPE_LABELS,
    Correction,
    CorrectionStore,
    Login,
    LoginFailed,
    LoginGuard,
    QuotaExceeded,
    StoreUnreadable,
    StoreUnwritable,
    check_login,
    export_corrections,
)
from feedback.review import apart_by_verification, filter_corrections
from feedback.review import summary as review_summary
from model.images import ImageError, image_identity, load_bytes, lossless_png, read_grey
from model.serving.batching import BatchingPredictor
from model.serving.cache import PredictionCache
from model.serving.gradcam import overlay
from model.serving.predictor import Prediction, Predictor
from model.serving.reload import ModelWatch
from space import presentation as show
from space.fairness import FairShare
from space.served import expire, make_own_zip, save_own_png

log = logging.getLogger(__name__)
EXPORT_PREFIX = "xray-covid-export-"
EXPORT_KEEP_S = 3600
MAX_REFUSALS = 1000
"""Refused flags remembered for their page's flag panel (API clients never ask, so the oldest are forgotten)."""


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


def thumbnails(store: CorrectionStore, corrections: list[Correction]) -> list[tuple[str, str]]:
    """Small grey PNG copies of the stored images (the store's files are never served), captioned with their record,
    this reader's own (space.served); deleted, with Gradio's copies, after space.served.LIFETIME_S."""
    folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))
    made: dict[str, str | None] = {}
    for c in corrections:
        if c.image_sha256 not in made:
            made[c.image_sha256] = None
            try:
                image = store.image_bytes(c)
                if image:
                    path = folder / f"{c.image_sha256[:16]}.png"
                    save_own_png(Image.fromarray(show.preview(read_grey(image), show.THUMBNAIL_SIDE)), path)
                    made[c.image_sha256] = str(path)
            except (ImageError, StoreUnreadable):
                pass
    expire([*(p for p in made.values() if p), folder])
    return [(made[c.image_sha256], f"#{c.id}") for c in corrections if made[c.image_sha256] is not None]


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
    proxies = settings.trusted_proxies() if proxies is None else proxies
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
    store: CorrectionStore
    readers: dict[str, str]
    model_path: Path
    network_slots: int = 1
    guard: LoginGuard = field(default_factory=LoginGuard)
    watch: bool = False
    cached: PredictionCache | None = field(init=False)
    batched: BatchingPredictor | None = field(init=False)
    watcher: ModelWatch | None = field(init=False, default=None)
    _swap: threading.Lock = field(init=False, default_factory=threading.Lock)
    _refusals: dict[str, str] = field(init=False, default_factory=dict)
    _refusals_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    fair: FairShare = field(init=False)
    fair_flags: FairShare = field(init=False)

    def __post_init__(self) -> None:
        self.fair = FairShare(1)
        self.fair_flags = FairShare(1)
        self.serve(self.predictor)
        if self.watch:
            self.watcher = ModelWatch(self.model_path, self.predictor.version if self.predictor else "")

    def serve(self, predictor: Predictor | None) -> None:
        """Answer from now on with this predictor, through a prediction cache and a batcher of its own."""
        cached = batched = None
        if predictor:
            cached = PredictionCache(predictor, preview_side=show.PREVIEW_SIDE, slots=self.network_slots)
            batched = BatchingPredictor(predictor, predictor.batch_size)
        with self._swap:
            self.predictor, self.cached, self.batched = predictor, cached, batched
        if predictor:
            self.fair.resize(predictor.batch_size + 1)

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
        share of the slots (one batch in the network, one more drawing its overlay); nothing here needs the store
        to be writable."""
        if not path:
            gr.Warning("Upload a chest X-ray first.")
            return gr.skip()
        with self.fair.turn(client_key(request)):
            data, sha256, prediction = self.read_and_predict(path, batched=True)
            picture = None
            if prediction.answered:
                picture = show.served_picture(overlay(show.preview(prediction.grey), prediction.heatmap,
                                                      prediction.crop_box, prediction.grey.shape))
        self.count_prediction(prediction.model_version, sha256)
        return (
            show.label_scores(prediction),
            show.decision_text(prediction, self.predictor.card),
            picture,
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
            return self.store.for_image(sha256)
        except StoreUnreadable as error:
            log.warning("corrections not read from %s: %s", self.store.folder, error)
            return []

    def page_model(self) -> tuple[str, str]:
        """What a page says about the model when it loads: the notice when there is none, and the card (version,
        threshold, input check) of the model serving now, after swapping in a newly installed one if it is ready."""
        self.serving()
        with self._swap:
            predictor = self.predictor
        if predictor is None:
            return show.missing_model_notice(self.model_path), show.card_summary(None)
        return "", show.card_summary(predictor.card)

    def store_notice(self) -> str:
        """The page's notice when flagging is unavailable because the store cannot be written now; else nothing."""
        problem = self.store.problem()
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
        image's corrections (with accounts: all of them; in open mode: only the one just made). A refusal is an
        error for the caller and is kept for the page's flag panel (flag_refused). Flags run one at a time, a fair
        share per client: a freed turn goes to the client with none running, then round robin."""
        try:
            with self.fair_flags.turn(client_key(request)):
                return self.record_flag(path, correct_label, reader, password, note, request)
        except gr.Error as error:
            if request is not None:
                with self._refusals_lock:
                    self._refusals[request.session_hash] = error.message
                    while len(self._refusals) > MAX_REFUSALS:
                        self._refusals.pop(next(iter(self._refusals)))
            raise

    def flag_refused(self, request: gr.Request = None) -> str:
        """The flag panel's message after this page's flag was refused: why, until the next try."""
        with self._refusals_lock:
            reason = self._refusals.pop(getattr(request, "session_hash", None), None)
        return show.flag_refused(reason) if reason else ""

    def record_flag(self, path: str | None, correct_label: str, reader: str, password: str, note: str,
                    request: gr.Request | None):
        """flag's work: sign in, check the store can take it (quotas before any work on the image), read and predict
        the upload, store the correction; gr.Error when refused. An input the check refused gets only a verdict on
        the input (SCOPE_LABELS), never a COVID-19 label."""
        login = self.sign_in(reader, password, request)
        problem = self.store.problem()
        if problem:
            raise refuse(show.not_stored(f"the corrections store cannot be written: {problem}"))
        try:
            self.store.check_quotas(login.reader, client_key(request))
        except QuotaExceeded as error:
            raise refuse(f"Not stored: {error}") from None
        except StoreUnreadable as error:
            raise refuse(show.not_stored(str(error))) from None
        data, sha256, prediction = self.read_and_predict(path)
        if not prediction.answered and correct_label not in SCOPE_LABELS:
            raise refuse(show.REFUSED_INPUT_FLAG)
        try:
            record_id, created = self.store.add(
                lossless_png(data), Path(path).name, correct_label, login.reader, note or "",
                model_said(prediction), prediction.probability if prediction.answered else 0.0, prediction.model_version,
                verified=login.verified, image_sha256=sha256, extension=".png", pixel_sha256=image_identity(data),
                client=client_key(request),
            )
        except ImageError as error:
            raise refuse(f"Cannot use {Path(path).name}: {error}") from None
        except StoreUnwritable as error:
            log.error("correction not stored in %s: %r", self.store.folder, error.__cause__ or error)
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
            self.store.count_prediction(model_version, image_sha256)
        except (StoreUnwritable, ValueError) as error:
            log.warning("prediction not counted in %s: %s", self.store.folder, error)

    def review_sign_in(self, reader: str, password: str, request: gr.Request | None) -> Login:
        """A reader signed in with an account, for the Corrections tab; a gr.Error in open mode or otherwise."""
        if not self.readers:
            raise refuse("Reviewing corrections needs reader accounts (XRAY_READERS); this Space has none.")
        return self.sign_in(reader, password, request)

    def review(self, reader: str, password: str, label: str | None, by_reader: str | None, version: str | None,
               request: gr.Request = None):
        """The Corrections tab for a signed-in reader: the filtered corrections, thumbnails, summary, filter choices."""
        self.review_sign_in(reader, password, request)
        stored = apart_by_verification(self.store.all())
        filters = (None if value in (None, "", show.ALL) else value for value in (label, by_reader, version))
        chosen = filter_corrections(stored, *filters)
        newest = chosen[::-1][: show.MAX_REVIEW_ROWS]
        summary = review_summary(chosen, self.store.prediction_counts(), self.store.predicted_images())
        return (
            show.review_status(len(newest), len(chosen)), show.review_table(newest), thumbnails(self.store, newest),
            show.review_counts(summary), show.version_table(summary), show.confusion_table(summary),
            gr.update(choices=[show.ALL, *sorted({c.reader for c in stored})]),
            gr.update(choices=[show.ALL, *sorted({c.model_version for c in stored})]),
        )

    def review_export(self, reader: str, password: str, request: gr.Request = None) -> str:
        """For a signed-in reader, the labelled folder `python -m feedback export` writes, as a zip file (its URL
        works for space.served.LIFETIME_S)."""
        self.review_sign_in(reader, password, request)
        remove_old_exports()
        folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))
        try:
            export_corrections(self.store, folder / "corrections")
            archive = shutil.make_archive(str(folder / "xray-covid-corrections"), "zip", folder / "corrections")
            expire([make_own_zip(Path(archive)), folder])
            return archive
        except (OSError, ValueError) as error:
            log.error("export of %s failed: %r", self.store.folder, error)
            raise refuse("Export failed: the store could not be read or the export could not be written "
                         "(the server's log says which file).") from None
        finally:
            shutil.rmtree(folder / "corrections", ignore_errors=True)
