"""The page's endpoints: Gradio's values in, the service's answers out as component values, its refusals as gr.Error."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from PIL import Image

from feedback import Correction, CorrectionStore, StoreUnreadable
from model.images import ImageError, read_grey
from space import presentation as show
from space.clients import client_key
from space.served import expire, make_own_zip, save_own_png
from space.service import EXPORT_FAILED, EXPORT_PREFIX, FlagForm, Refused, Service, Upload

MAX_REFUSALS = 1000
"""Refused flags remembered for their page's flag panel (API clients never ask, so the oldest are forgotten)."""


def refuse(message: str) -> gr.Error:
    """The error a user reads, without a traceback in the server's log (it is the user's mistake, not the app's)."""
    return gr.Error(message, print_exception=False)


def upload(path: str | None) -> Upload | None:
    """The file Gradio saved for an upload box, or None when the box is empty."""
    return Upload(Path(path).name, path) if path else None


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


@dataclass
class Handlers:
    """What each button and upload of the Space does: the service's answers as component values, its refusals as
    gr.Error."""

    service: Service
    _refusals: dict[str, str] = field(init=False, default_factory=dict)
    _refusals_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def predict(self, path: str | None, request: gr.Request = None):
        """COVID-19 probability, the decision at the model's threshold, a Grad-CAM overlay, and whether readers have
        reviewed this image (what they said is for signed-in readers only), then the input gate's status and reason
        and the model version; a refused input gets no probability, decision or overlay."""
        if not path:
            gr.Warning("Upload a chest X-ray first.")
            return gr.skip()
        try:
            reading = self.service.predict(upload(path), client_key(request))
        except Refused as error:
            raise refuse(error.message) from None
        prediction = reading.prediction
        return (
            show.label_scores(prediction),
            show.decision_text(prediction, reading.card),
            None if reading.picture is None else show.served_picture(reading.picture),
            show.public_corrections(self.service.corrections(reading.sha256)),
            prediction.status,
            prediction.reason,
            prediction.model_version,
        )

    def predict_new_file(self, path: str | None, request: gr.Request = None):
        return self.predict(path, request) if path else gr.skip()

    def page_model(self) -> tuple[str, str]:
        """What a page says about the model when it loads: the notice when there is none, and the card (version,
        threshold, input check) of the model serving now, after swapping in a newly installed one if it is ready."""
        predictor = self.service.current()
        if predictor is None:
            return show.missing_model_notice(self.service.model_path), show.card_summary(None)
        return "", show.card_summary(predictor.card)

    def store_notice(self) -> str:
        """The page's notice when flagging is unavailable because the store cannot be written now; else nothing."""
        problem = self.service.store_problem()
        return show.flagging_unavailable(problem) if problem else ""

    def show_file(self, path: str | None):
        """Preview the new file and clear the previous result."""
        try:
            image = show.preview(read_grey(path)) if path else None
        except ImageError:
            image = None
        return image, {}, "", None, show.corrections_table([]), "", "", "", ""

    def flag(self, path: str | None, correct_label: str, reader: str, password: str, note: str,
             request: gr.Request = None):
        """Record a reader's correction of the model's answer for this image; returns the record id in words and the
        image's corrections (with accounts: all of them; in open mode: only the one just made). A refusal is an
        error for the caller and is kept for the page's flag panel (flag_refused)."""
        form = FlagForm(upload(path), correct_label, reader, password, note)
        try:
            flagged = self.service.flag(form, client_key(request))
        except Refused as error:
            if request is not None:
                with self._refusals_lock:
                    self._refusals[request.session_hash] = error.message
                    while len(self._refusals) > MAX_REFUSALS:
                        self._refusals.pop(next(iter(self._refusals)))
            raise refuse(error.message) from None
        return (show.flag_confirmation(flagged.record_id, flagged.created, flagged.correct_label, flagged.verified),
                show.corrections_table(flagged.corrections))

    def flag_refused(self, request: gr.Request = None) -> str:
        """The flag panel's message after this page's flag was refused: why, until the next try."""
        with self._refusals_lock:
            reason = self._refusals.pop(getattr(request, "session_hash", None), None)
        return show.flag_refused(reason) if reason else ""

    def review(self, reader: str, password: str, label: str | None, by_reader: str | None, version: str | None,
               request: gr.Request = None):
        """The Corrections tab for a signed-in reader: the filtered corrections, thumbnails, summary, filter choices."""
        filters = (None if value in (None, "", show.ALL) else value for value in (label, by_reader, version))
        try:
            found = self.service.review(reader, password, client_key(request), *filters)
        except Refused as error:
            raise refuse(error.message) from None
        return (
            show.review_status(len(found.newest), found.chosen), show.review_table(found.newest),
            thumbnails(self.service.store, found.newest), show.review_counts(found.summary),
            show.version_table(found.summary), show.confusion_table(found.summary),
            gr.update(choices=[show.ALL, *found.readers]), gr.update(choices=[show.ALL, *found.versions]),
        )

    def review_export(self, reader: str, password: str, request: gr.Request = None) -> str:
        """For a signed-in reader, the labelled folder `python -m feedback export` writes, as a zip file (its URL
        works for space.served.LIFETIME_S)."""
        try:
            archive = self.service.export(reader, password, client_key(request))
            expire([make_own_zip(archive), archive.parent])
        except Refused as error:
            raise refuse(error.message) from None
        except OSError:
            raise refuse(EXPORT_FAILED) from None
        return str(archive)
