"""The Space: upload a chest X-ray, see the model's probability, decision and Grad-CAM, and flag wrong answers.

Run with `python app.py` (127.0.0.1:7860; on a Space every interface). The environment variables that configure it
(MODEL_PATH, XRAY_FEEDBACK_DIR, XRAY_READERS, XRAY_PRECISION, PORT, ...) are listed in settings.py.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import gradio as gr
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from gradio.route_utils import FnIndexInferError
from starlette.middleware import Middleware

import settings
from feedback import CorrectionStore, load_readers, open_store
from model.artifact import DEFAULT_ARTIFACT
from model.decode_budget import limit_heap_arenas
from model.images import EXTENSIONS, FORMAT_NAMES, MAX_FILE_BYTES
from model.serving.predictor import Predictor, load_predictor
from space import presentation as show
from space.admission import Admission, RefuseAtTheDoor, admit_per_client
from space.cache_folder import claim
from space.handlers import Handlers
from space.rest import PREFIX, rest_api
from space.service import Service
from space.label import decision_label
from space.upload import upload_box
from space.upload_limits import UploadAllowance, UploadLedger, UploadLimits

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
DELETE_CACHE = (1800, 3600)
QUEUE_SIZE = 64
REFUSAL_DELAY_S = 2.0
"""A request refused at the door is answered this late, so a client that floods sends its next ones more slowly."""


def example_files(folder: Path = EXAMPLES_DIR) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS) if folder.is_dir() else []


def examples_notes(folder: Path = EXAMPLES_DIR) -> str:
    """The examples' README (where each film comes from, its licence and the attribution it asks for), shown on the
    page, since a visitor cannot open the file itself; "" without one."""
    notes = folder / "README.md"
    return notes.read_text(encoding="utf-8") if notes.is_file() else ""


def build_demo(
    predictor: Predictor | None,
    store: CorrectionStore,
    readers: dict[str, str],
    model_path: Path = DEFAULT_ARTIFACT,
    watch: bool = False,
) -> gr.Blocks:
    """The page over a service of its own (build_service); predictor None means no model is available."""
    return page(build_service(predictor, store, readers, model_path, watch), Admission(settings.requests_per_client()))


def build_service(predictor: Predictor | None, store: CorrectionStore, readers: dict[str, str],
                  model_path: Path = DEFAULT_ARTIFACT, watch: bool = False) -> Service:
    """What the page and the REST API both serve from (space.service), with settings.network_slots()."""
    return Service(predictor, store, readers, model_path, network_slots=settings.network_slots(), watch=watch)


def page(service: Service, door: Admission) -> gr.Blocks:
    """The app's UI and its `predict` and `flag` endpoints over the service, its queue guarded by the door.

    Uploads older than an hour are deleted from Gradio's cache (DELETE_CACHE). A client may have the door's limit of
    requests waiting or running (here and at the REST API when it shares the door); its next ones are refused at the
    queue's door (space.admission), and nothing goes around the queue (api_open=False closes Gradio's direct /run
    routes). Every admitted prediction is let in; each client gets a fair share of the predictor's batch-size slots
    (space.fairness), whose predictions go through the network together (model.serving.batching, one pass at a time). A
    notice says when flagging is unavailable. Flags have their own queue and fair share (one at a time), so one that
    reuses a cached prediction never waits behind predictions (one that misses the cache runs unbatched, at most
    settings.network_slots() at once). With `watch`, a model promoted into model_path replaces the loaded one between
    requests, without a restart; each page load shows the card of the model serving then. A refused flag leaves its
    reason in the flag panel until the next try.
    """
    on, readers = Handlers(service), service.readers
    with gr.Blocks(title="xray-covid: COVID-19 from a chest X-ray (research demo)", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown("# COVID-19 from a chest X-ray\n\n" + show.NOTICE)
        store_notice = gr.Markdown(on.store_notice())
        no_model, card_text = on.page_model()
        model_notice = gr.Markdown(no_model)
        with gr.Row():
            with gr.Column():
                upload = upload_box(f"Chest X-ray: {FORMAT_NAMES}")
                preview = gr.Image(label="Your X-ray", interactive=False, height=320)
                analyse = gr.Button("Analyse", variant="primary")
                gr.Examples(
                    example_files(), inputs=upload, label="Examples (real X-rays; sources and licences below)",
                    api_visibility="private",
                )
                with gr.Accordion("About the examples: sources, licences, attribution", open=False):
                    gr.Markdown(examples_notes())
            with gr.Column():
                scores = decision_label("Probability")
                decision = gr.Markdown(label="Decision")
                heatmap = gr.Image(
                    label="Grad-CAM overlay (regions that drove the score)", format="jpeg", interactive=False, height=320
                )
                earlier = gr.Dataframe(
                    show.corrections_table([]), label="Earlier radiologist corrections of this image",
                    datatype="str", interactive=False, wrap=True, show_label=True,
                )
                with gr.Row():
                    status = gr.Textbox(label="Status (input check)", interactive=False, max_lines=1)
                    reason = gr.Textbox(label="Reason", interactive=False, lines=2, max_lines=12, scale=3)
                    version = gr.Textbox(label="Model version", interactive=False, max_lines=1)
        with gr.Accordion("Flag as wrong (radiologists)", open=False):
            correct = gr.Radio(show.LABEL_CHOICES, label="Correct label (for an input the check refused: what it is)")
            reader = gr.Textbox(label="Reader name (your account)" if readers else "Your name")
            password = gr.Textbox(label="Password", type="password", visible=bool(readers))
            note = gr.Textbox(label="Note (optional)", lines=2)
            if not readers:
                gr.Markdown(show.UNVERIFIED_NOTICE)
            send = gr.Button("Flag as wrong", variant="stop")
            confirmation = gr.Markdown(label="Confirmation")
        card = gr.Markdown(card_text)
        corrections_tab(on, readers)

        results = [scores, decision, heatmap, earlier, status, reason, version]
        network = {"concurrency_id": "predict", "concurrency_limit": QUEUE_SIZE}
        upload.change(on.show_file, upload, [preview, *results, confirmation], api_visibility="private").then(
            on.predict_new_file, upload, results, api_visibility="private", **network
        )
        analyse.click(on.predict, upload, results, api_name="predict", **network)
        send.click(on.flag, [upload, correct, reader, password, note], [confirmation, earlier], api_name="flag",
                   concurrency_id="flag", concurrency_limit=QUEUE_SIZE).failure(
            on.flag_refused, None, confirmation, api_visibility="private")
        demo.load(on.store_notice, None, store_notice, api_visibility="private")
        demo.load(on.page_model, None, [model_notice, card], api_visibility="private")
    return admit_per_client(demo.queue(max_size=QUEUE_SIZE, api_open=False), door)


def corrections_tab(on: Handlers, readers: dict[str, str]) -> None:
    """The Corrections tab: signed-in readers review, filter and export corrections; open mode shows no data at all."""
    with gr.Tab("Corrections (readers)"):
        if not readers:
            gr.Markdown(show.REVIEW_NEEDS_ACCOUNTS)
            return
        gr.Markdown(show.REVIEW_SIGN_IN)
        with gr.Row():
            reader = gr.Textbox(label="Reviewing reader", scale=2)
            password = gr.Textbox(label="Reviewer's password", type="password", scale=2)
            load = gr.Button("Sign in and show corrections", variant="primary", scale=1)
        with gr.Row():
            label = gr.Dropdown([(show.ALL, show.ALL), *show.LABEL_CHOICES], value=show.ALL, label="Filter: label")
            by_reader = gr.Dropdown([show.ALL], value=show.ALL, label="Filter: reader", allow_custom_value=True)
            version = gr.Dropdown([show.ALL], value=show.ALL, label="Filter: model version", allow_custom_value=True)
        status = gr.Markdown()
        table = gr.Dataframe(show.review_table([]), label="Corrections", datatype="str", interactive=False, wrap=True)
        pictures = gr.Gallery(label="Thumbnails (captioned by record)", columns=8, height=160, object_fit="scale-down",
                              allow_preview=False, format="png")
        counts = gr.Markdown()
        with gr.Row():
            versions = gr.Dataframe(headers=list(show.VERSION_COLUMNS), label="Share of predictions corrected",
                                    datatype="str", interactive=False)
            matrix = gr.Dataframe(headers=list(show.CONFUSION_COLUMNS), label="Model's decision vs reader's label",
                                  datatype="str", interactive=False)
        export = gr.Button("Download the export (zip)")
        archive = gr.File(label="Export: covid/, not_covid/, MANIFEST.csv", interactive=False)
    inputs = [reader, password, label, by_reader, version]
    outputs = [status, table, pictures, counts, versions, matrix, by_reader, version]
    gr.on([load.click, label.input, by_reader.input, version.input], on.review, inputs, outputs, api_name="review",
          concurrency_id="review", concurrency_limit=1)
    export.click(on.review_export, [reader, password], archive, api_name="review_export", concurrency_id="review")


async def unknown_endpoint(request, error) -> JSONResponse:
    """An API name this app does not have (e.g. /review in open mode) is 404 Not Found, not a server error."""
    return JSONResponse({"detail": f"No such endpoint: {request.path_params.get('api_name', '')}"}, status_code=404)


def launch(demo: gr.Blocks, store: CorrectionStore, api: APIRouter | None = None, door: Admission | None = None,
           **kwargs):
    """Serve with the upload cap and each client's upload allowance (space.upload_limits, settings.upload_limits; an
    upload counts as kept until the cache's clean-up can delete it), the corrections store's files blocked from Gradio's
    file route, unknown endpoints as 404, enough threads for every queued prediction to wait its fair turn, and the peer
    address as uvicorn saw it: uvicorn would otherwise replace it with X-Forwarded-For from loopback peers
    (space.clients.client_key reads the header the trusted proxy wrote itself). `api`'s routes (space.rest) are served
    beside the page, with their own schema in place of FastAPI's; a client the `door` would refuse is refused before
    its request's body is read (space.admission.RefuseAtTheDoor)."""
    blocked = [*settings.blocked_paths(), *([str(store.files.resolve())] if store.files else [])]
    settings.distrust_forwarded_headers()
    allowance = UploadLedger(UploadLimits(*settings.upload_limits(), keep_s=sum(DELETE_CACHE)))
    uploads = Middleware(UploadAllowance, ledger=allowance, api_prefix=PREFIX, max_bytes=MAX_FILE_BYTES)
    early = [Middleware(RefuseAtTheDoor, door=door, also=(PREFIX,), delay_s=REFUSAL_DELAY_S)] if door else []
    routes = {"routes": api.routes, "openapi_url": None} if api else {}
    return demo.launch(max_file_size=MAX_FILE_BYTES, blocked_paths=blocked, max_threads=QUEUE_SIZE + 16,
                       app_kwargs={"exception_handlers": {FnIndexInferError: unknown_endpoint},
                                   "middleware": [*early, uploads], **routes}, **kwargs)


def log_model_lines() -> None:
    """The model's start-up lines (the precision chosen, and why) on stderr."""
    logger = logging.getLogger("model")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
        logger.setLevel(logging.INFO)


def configured_demo() -> tuple[gr.Blocks, Service, Admission]:
    """The demo as the environment configures it (MODEL_PATH, XRAY_FEEDBACK_DIR, reader accounts), keeping its files in
    a folder of its own in Gradio's cache (GRADIO_TEMP_DIR), where the folders of instances that are gone (killed:
    their uploads stayed) are removed first (space.cache_folder)."""
    if settings.heap_arenas():
        limit_heap_arenas(settings.heap_arenas())
    settings.use_gradio_cache(claim(settings.gradio_cache()))
    model_path = settings.model_path() or DEFAULT_ARTIFACT
    log_model_lines()
    try:
        predictor = load_predictor(model_path, serving=True)
    except FileNotFoundError as error:
        print(f"Starting without a model: {error}", file=sys.stderr)
        predictor = None
    except ValueError as error:
        print(f"Cannot start: the model at {model_path} cannot be loaded: {error}", file=sys.stderr)
        sys.exit(2)
    service = build_service(predictor, open_store(settings.store_url()), load_readers(), model_path, watch=True)
    door = Admission(settings.requests_per_client())
    return page(service, door), service, door


def __getattr__(name: str):
    """`demo` for `gradio app.py` reload mode, built on first use so that importing app stays cheap."""
    if name != "demo":
        raise AttributeError(name)
    globals()["demo"] = configured_demo()[0]
    return globals()["demo"]


def main() -> None:
    demo, service, door = configured_demo()
    launch(demo, service.store, rest_api(service, door), door, server_name=settings.server_name(),
           server_port=settings.server_port())


if __name__ == "__main__":
    main()
