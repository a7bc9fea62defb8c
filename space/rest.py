"""The REST API beside the page (/api/v1/...): a file in, the service's answer out as JSON, its refusals as HTTP
errors with the page's words; its OpenAPI schema at /openapi.json."""

from __future__ import annotations

import base64
import io
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.openapi.utils import get_openapi
from PIL import Image
from pydantic import BaseModel, Field

from feedback.store import VERDICTS
from model.gate import MADE_FOR, OUT_OF_SCOPE_KINDS, UNLIKE_KIND
from model.images import FORMAT_NAMES, MAX_FILE_BYTES
from space import presentation as show
from space.admission import Admission, admitted
from space.clients import client_key
from space.service import (
    GATE_KINDS,
    FlagForm,
    NoModel,
    NotSignedIn,
    NotStored,
    Refused,
    Service,
    TooMany,
    Unusable,
    Upload,
)

PREFIX = "/api/v1"
TITLE = "xray-covid REST API"
SCHEMA_PATH = "/openapi.json"
STATUS_OF = ((NoModel, 503), (Unusable, 422), (NotSignedIn, 401), (TooMany, 429), (NotStored, 503), (Refused, 400))
"""The HTTP status of each refusal of the service, most specific first."""


class Gate(BaseModel):
    """The input check's part in an answer."""

    kind: str = Field(description="which check gave the status: "
                                  + "; ".join(f"{k}: {v}" for k, v in GATE_KINDS.items()))
    score: float | None = Field(description="the gate's in-scope probability (None where the header decided or there "
                                            "is no gate)")
    looks_like: str | None = Field(description="what the gate took an image it refused for: "
                                               + ", ".join(k.name for k in OUT_OF_SCOPE_KINDS)
                                               + f", or {UNLIKE_KIND} (like nothing it was trained on); else None")


class PredictAnswer(BaseModel):
    """A prediction: answered, or out_of_scope (the input check refused it: no probability or decision, and why)."""

    status: str = Field(description="answered, or out_of_scope when the input check refused the image")
    probability: float | None = Field(description="the calibrated probability of COVID-19; None when refused")
    decision: str | None = Field(description="the class at the model's threshold; None when refused")
    positive: bool | None = Field(description="whether the decision is COVID-19; None when refused")
    threshold: float = Field(description="the model's decision threshold on the probability")
    reason: str = Field(description="why the input was refused, or that the model has no input check; else empty")
    model_version: str
    precision: str = Field(description="the numbers the network ran in (float32, bfloat16)")
    gate: Gate
    sha256: str = Field(description="SHA-256 of the uploaded file's bytes")
    heatmap_png: str | None = Field(None, description="with ?heatmap=1 and an answered input: the Grad-CAM overlay "
                                                      "as a base64 PNG")


class ModelAnswer(BaseModel):
    """The model serving now."""

    version: str
    name: str
    threshold: float
    threshold_rule: str
    made_for: str = Field(description="what the model reads; other inputs are refused as out_of_scope")
    formats: str = Field(description="the file formats it reads")
    input_check: bool = Field(description="whether the model has an input gate")
    card: str = Field(description="the model card as the page shows it (Markdown)")


class FlagAnswer(BaseModel):
    """A stored correction."""

    record_id: int
    created: bool = Field(description="False when this reader had already stored the same verdict on this image")
    correct_label: str
    verified: bool = Field(description="whether the reader signed in with an account (open mode: unverified)")
    message: str = Field(description="the confirmation the page shows")


class Problem(BaseModel):
    """A refusal: why, in the page's words."""

    detail: str


def http_error(error: Refused) -> HTTPException:
    """The service's refusal as an HTTP error whose JSON detail is its message."""
    status = next(code for kind, code in STATUS_OF if isinstance(error, kind))
    return HTTPException(status_code=status, detail=error.message)


def png_base64(rgb) -> str:
    """An RGB array as a base64-encoded PNG."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def read_upload(file: UploadFile) -> Upload:
    """The uploaded part's name and bytes (one byte past the limit at most, for the service to refuse in words)."""
    file.file.seek(0)
    return Upload(file.filename or "upload", file.file.read(MAX_FILE_BYTES + 1))


REFUSALS = {code: {"model": Problem} for code in (400, 401, 411, 413, 422, 429, 503)}


def rest_api(service: Service, door: Admission) -> APIRouter:
    """The API's routes over the service, each client's requests admitted at the door (shared with the page's queue:
    space.admission), and the schema of these routes alone (Gradio's own routes are the page's business)."""
    router = APIRouter()

    @router.post(f"{PREFIX}/predict", response_model=PredictAnswer, responses=REFUSALS, tags=["predict"])
    def predict(request: Request, file: Annotated[UploadFile, File(description=f"a chest X-ray: {FORMAT_NAMES}")],
                heatmap: Annotated[bool, Query(description="add the Grad-CAM overlay as a base64 PNG")] = False):
        """The COVID-19 probability of one chest X-ray and the decision at the model's threshold; an input the check
        refuses is answered (200) with status out_of_scope and the reason."""
        client = client_key(request)
        with admitted(door, client):
            try:
                reading = service.predict(read_upload(file), client, picture=heatmap)
            except Refused as error:
                raise http_error(error) from None
        p = reading.prediction
        return PredictAnswer(
            status=p.status, probability=p.probability if p.answered else None, decision=p.label or None,
            positive=p.positive if p.answered else None, threshold=p.threshold, reason=p.reason,
            model_version=p.model_version, precision=p.precision,
            gate=Gate(kind=reading.gate_kind, score=p.gate_score, looks_like=p.gate_looks_like or None),
            sha256=reading.sha256, heatmap_png=None if reading.picture is None else png_base64(reading.picture),
        )

    @router.get(f"{PREFIX}/model", response_model=ModelAnswer, responses={503: {"model": Problem}}, tags=["model"])
    def model():
        """The model serving now: version, threshold, what it is made for, and its card."""
        predictor = service.current()
        if predictor is None:
            raise HTTPException(status_code=503, detail=show.missing_model_notice(service.model_path))
        card = predictor.card
        return ModelAnswer(version=card.version, name=card.name, threshold=card.threshold,
                           threshold_rule=card.threshold_rule, made_for=MADE_FOR, formats=FORMAT_NAMES,
                           input_check=predictor.gate is not None, card=show.card_summary(card))

    @router.post(f"{PREFIX}/flag", response_model=FlagAnswer, responses=REFUSALS, tags=["flag"])
    def flag(request: Request, file: Annotated[UploadFile, File(description="the image the model got wrong")],
             correct_label: Annotated[str, Form(description="one of " + ", ".join(VERDICTS))],
             reader: Annotated[str, Form()], password: Annotated[str, Form()] = "", note: Annotated[str, Form()] = ""):
        """A reader's correction of the model's answer on this image, with the page's sign-in rules and lockouts."""
        client = client_key(request)
        with admitted(door, client):
            try:
                flagged = service.flag(FlagForm(read_upload(file), correct_label, reader, password, note), client)
            except Refused as error:
                raise http_error(error) from None
        return FlagAnswer(record_id=flagged.record_id, created=flagged.created, correct_label=flagged.correct_label,
                          verified=flagged.verified, message=show.flag_confirmation(
                              flagged.record_id, flagged.created, flagged.correct_label, flagged.verified))

    api_routes = list(router.routes)

    @router.get(SCHEMA_PATH, include_in_schema=False)
    def schema() -> dict:
        return get_openapi(title=TITLE, version="1", routes=api_routes,
                           description="Chest X-ray in, COVID-19 probability and decision out (research demo).")

    return router
