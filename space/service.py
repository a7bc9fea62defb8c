"""The Space's work on plain values, whichever door a request came in by (the page or the REST API): predict, flag,
review and export, with the fair shares, quotas, model swap, prediction cache and batcher both doors share."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    TooManyAttempts,
    check_login,
    export_corrections,
)
from feedback.review import Summary, apart_by_verification, filter_corrections
from feedback.review import summary as review_summary
from model.card import ModelCard
from model.images import ImageError, Source, image_identity, load_bytes, lossless_png
from model.serving.batching import BatchingPredictor
from model.serving.cache import PredictionCache
from model.serving.overlay import overlay
from model.serving.predictor import Prediction, Predictor
from model.serving.reload import ModelWatch
from space import presentation as show
from space.fairness import FairShare

log = logging.getLogger(__name__)
EXPORT_PREFIX = "xray-covid-export-"
EXPORT_KEEP_S = 3600
EXPORT_FAILED = ("Export failed: the store could not be read or the export could not be written "
                 "(the server's log says which file).")
GATE_KINDS = {"none": "the model has no input check", "header": "the DICOM header decided",
              "image": "the input gate scored the image (gate_score: its in-scope probability)"}
"""Which check gave a prediction's status, by the name a Reading's gate_kind carries."""


class Refused(Exception):
    """A request the app will not serve, with why in words for the person who sent it (their mistake or the app's
    state, never a fault of the server's)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoModel(Refused):
    """No model is loaded, so nothing can be predicted."""


class Unusable(Refused):
    """The upload is missing or cannot be read as an image."""


class NotSignedIn(Refused):
    """A sign-in was refused: unknown reader, wrong password, or no accounts for what was asked."""


class TooMany(Refused):
    """Over a limit that frees with time: too many failed sign-ins, or a quota of the corrections store."""


class NotStored(Refused):
    """The corrections store cannot take a flag now."""


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: its name (for messages and the record) and its path or bytes."""

    name: str
    source: Source


@dataclass(frozen=True)
class Reading:
    """One upload's prediction: the image's SHA-256, the prediction, the card of the model that made it, which check
    gave its status (a key of GATE_KINDS) and, when asked for and the input was answered, the Grad-CAM overlay (RGB,
    over the preview of the image)."""

    sha256: str
    prediction: Prediction
    card: ModelCard
    gate_kind: str
    picture: np.ndarray | None = None


@dataclass(frozen=True)
class FlagForm:
    """A reader's correction as sent: the upload, the correct label (a verdict), who signs in, and a note."""

    upload: Upload | None
    correct_label: str
    reader: str
    password: str
    note: str = ""


@dataclass(frozen=True)
class Flagged:
    """A stored correction: its record id, whether it is new, its label, whether the reader proved who they are, and
    the image's corrections the reader may see (with accounts: all of them; in open mode: only this one)."""

    record_id: int
    created: bool
    correct_label: str
    verified: bool
    corrections: list[Correction]


@dataclass(frozen=True)
class Review:
    """The Corrections tab's data: the newest chosen corrections (at most show.MAX_REVIEW_ROWS), how many were chosen,
    the review summary, and the readers and model versions to filter by."""

    newest: list[Correction]
    chosen: int
    summary: Summary
    readers: list[str]
    versions: list[str]


def model_said(prediction: Prediction) -> str:
    """What a correction records as the model's answer: positive, negative, or out_of_scope (no decision given)."""
    if not prediction.answered:
        return prediction.status
    return "positive" if prediction.positive else "negative"


def gate_kind(predictor: Predictor, prediction: Prediction) -> str:
    """Which check gave the prediction's status: no input check, the DICOM header, or the gate on the image."""
    if predictor.gate is None:
        return "none"
    return "header" if prediction.gate_score is None else "image"


def remove_old_exports(keep_s: float = EXPORT_KEEP_S) -> None:
    """Delete this app's export folders in the temporary directory that are older than keep_s seconds."""
    for folder in Path(tempfile.gettempdir()).glob(f"{EXPORT_PREFIX}*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and time.time() - folder.stat().st_mtime > keep_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


@dataclass
class Service:
    """What the app does for a request; predictor None means no model is available.

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

    def serving(self) -> tuple[Predictor | None, PredictionCache | None, BatchingPredictor | None]:
        """The predictor, cache and batcher for this request, after swapping in a newly installed model if one is
        ready."""
        fresh = self.watcher.poll() if self.watcher else None
        if fresh is not None:
            self.serve(fresh)
        with self._swap:
            return self.predictor, self.cached, self.batched

    def current(self) -> Predictor | None:
        """The predictor serving now (a newly installed model swapped in first); None when there is no model."""
        return self.serving()[0]

    def read_and_predict(self, upload: Upload | None,
                         batched: bool = False) -> tuple[bytes, str, Prediction, Predictor]:
        """The upload's bytes, SHA-256, prediction (with concurrent predictions when batched) and the predictor that
        made it; NoModel or Unusable when it cannot be made."""
        predictor, cached, batcher = self.serving()
        if cached is None:
            raise NoModel(f"No model is loaded. Create one with: {show.train_command(self.model_path)}")
        if upload is None:
            raise Unusable("Upload a chest X-ray first.")
        try:
            data = load_bytes(upload.source)
            return data, *cached(data, batcher.predict if batched else None), predictor
        except ImageError as error:
            raise Unusable(f"Cannot use {upload.name}: {error}") from None

    def predict(self, upload: Upload | None, client: str | None, picture: bool = True) -> Reading:
        """The upload's prediction, with the Grad-CAM overlay when `picture` and the input is answered; counted for
        the model version. Each client gets a fair share of the slots (one batch in the network, one more drawing
        its overlay); nothing here needs the store to be writable."""
        with self.fair.turn(client):
            _, sha256, prediction, predictor = self.read_and_predict(upload, batched=True)
            drawn = None
            if picture and prediction.answered:
                drawn = overlay(show.preview(prediction.grey), prediction.heatmap, prediction.crop_box,
                                prediction.grey.shape)
        self.count_prediction(prediction.model_version, sha256)
        return Reading(sha256, prediction, predictor.card, gate_kind(predictor, prediction), drawn)

    def corrections(self, sha256: str) -> list[Correction]:
        """The image's corrections; none when the store cannot be read (logged: a prediction never fails for it)."""
        try:
            return self.store.for_image(sha256)
        except StoreUnreadable as error:
            log.warning("corrections not read from %s: %s", self.store.location, error)
            return []

    def store_problem(self) -> str:
        """Why the store cannot be written now (flagging is unavailable), else ""."""
        return self.store.problem()

    def sign_in(self, reader: str, password: str, client: str | None) -> Login:
        """The reader allowed to flag (verified with accounts, unverified in open mode); NotSignedIn or TooMany
        otherwise."""
        try:
            return check_login(self.readers, self.guard, reader, password, client)
        except LoginFailed as error:
            message = str(error) if self.readers else f"Enter your name to flag a prediction: {error}"
            raise (TooMany if isinstance(error, TooManyAttempts) else NotSignedIn)(message) from None

    def flag(self, form: FlagForm, client: str | None) -> Flagged:
        """Record a reader's correction of the model's answer for this image. Flags run one at a time, a fair share
        per client: a freed turn goes to the client with none running, then round robin."""
        with self.fair_flags.turn(client):
            return self.record_flag(form, client)

    def record_flag(self, form: FlagForm, client: str | None) -> Flagged:
        """flag's work: sign in, check the store can take it (quotas before any work on the image), read and predict
        the upload, store the correction; Refused when it cannot. An input the check refused gets only a verdict on
        the input (SCOPE_LABELS), never a COVID-19 label."""
        login = self.sign_in(form.reader, form.password, client)
        problem = self.store.problem()
        if problem:
            raise NotStored(show.not_stored(f"the corrections store cannot be written: {problem}"))
        try:
            self.store.check_quotas(login.reader, client)
        except QuotaExceeded as error:
            raise TooMany(f"Not stored: {error}") from None
        except StoreUnreadable as error:
            raise NotStored(show.not_stored(str(error))) from None
        data, sha256, prediction, _ = self.read_and_predict(form.upload, batched=True)
        if not prediction.answered and form.correct_label not in SCOPE_LABELS:
            raise Refused(show.REFUSED_INPUT_FLAG)
        try:
            record_id, created = self.store.add(
                lossless_png(data), form.upload.name, form.correct_label, login.reader, form.note or "",
                model_said(prediction), prediction.probability if prediction.answered else 0.0,
                prediction.model_version,
                verified=login.verified, image_sha256=sha256, extension=".png", pixel_sha256=image_identity(data),
                client=client,
            )
        except ImageError as error:
            raise Unusable(f"Cannot use {form.upload.name}: {error}") from None
        except StoreUnwritable as error:
            log.error("correction not stored in %s: %r", self.store.location, error.__cause__ or error)
            raise NotStored(show.not_stored(str(error))) from None
        except QuotaExceeded as error:
            raise TooMany(f"Not stored: {error}") from None
        except ValueError as error:
            raise Refused(str(error)) from None
        shown = self.corrections(sha256)
        if not self.readers:
            shown = [c for c in shown if c.id == record_id]
        return Flagged(record_id, created, form.correct_label, login.verified, shown)

    def count_prediction(self, model_version: str, image_sha256: str) -> None:
        """Count one prediction of this image shown for this model version; a store that cannot be written is only
        logged, so counting never fails a prediction."""
        try:
            self.store.count_prediction(model_version, image_sha256)
        except (StoreUnwritable, ValueError) as error:
            log.warning("prediction not counted in %s: %s", self.store.location, error)

    def review_sign_in(self, reader: str, password: str, client: str | None) -> Login:
        """A reader signed in with an account, for reviewing; NotSignedIn in open mode, or as sign_in refuses."""
        if not self.readers:
            raise NotSignedIn("Reviewing corrections needs reader accounts (XRAY_READERS); this Space has none.")
        return self.sign_in(reader, password, client)

    def review(self, reader: str, password: str, client: str | None, label: str | None = None,
               by_reader: str | None = None, version: str | None = None) -> Review:
        """For a signed-in reader, the corrections chosen by label, reader and model version (None: any)."""
        self.review_sign_in(reader, password, client)
        stored = apart_by_verification(self.store.all())
        chosen = filter_corrections(stored, label, by_reader, version)
        summary = review_summary(chosen, self.store.prediction_counts(), self.store.predicted_images())
        return Review(chosen[::-1][: show.MAX_REVIEW_ROWS], len(chosen), summary,
                      sorted({c.reader for c in stored}), sorted({c.model_version for c in stored}))

    def export(self, reader: str, password: str, client: str | None) -> Path:
        """For a signed-in reader, the labelled folder `python -m feedback export` writes, as a zip file in a folder of
        its own under the temporary directory (named EXPORT_PREFIX..., removed after EXPORT_KEEP_S by a later
        export)."""
        self.review_sign_in(reader, password, client)
        remove_old_exports()
        folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))
        try:
            export_corrections(self.store, folder / "corrections")
            return Path(shutil.make_archive(str(folder / "xray-covid-corrections"), "zip", folder / "corrections"))
        except (OSError, ValueError) as error:
            log.error("export of %s failed: %r", self.store.location, error)
            raise Refused(EXPORT_FAILED) from None
        finally:
            shutil.rmtree(folder / "corrections", ignore_errors=True)

