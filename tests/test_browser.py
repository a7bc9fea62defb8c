"""A new user's session in a real browser: pick an example, analyse it, flag the answer as wrong, see the record."""

from __future__ import annotations

import contextlib
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from feedback.export import FOLDERS
from feedback.store import CorrectionStore
from model.images import read_grey
from model.serving.predictor import load_predictor
from tests.server import REPO, Server, add_gate, make_model, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SCREENSHOT = Path("/tmp/xray-covid-browser-test.png")
EXAMPLE = "covid-1.jpg"
DECISION = re.compile(r"(COVID-19 (?:positive|negative))(?: \(screening: [^)]*\))?: the model's probability of "
                      r"COVID-19 is (\d\.\d\d)")
RECORD = re.compile(r"recorded as record #(\d+)")
TIMEOUT_MS = 60_000
LOADED_SIZE = """img => img.complete ? [img.naturalWidth, img.naturalHeight] : new Promise(done => {
    img.addEventListener("load", () => done([img.naturalWidth, img.naturalHeight]));
    img.addEventListener("error", () => done([0, 0]));
})"""
"""An image's natural size once it has loaded ([0, 0] if it failed): visible is not yet loaded on a busy machine."""
NOTE_EXAMPLE = "normal-1.png"
FAKE_RECORD = "- #99 **positive** by dr_chief"
HOSTILE_NOTE = ('see <form action="http://evil.example/"><input type=password name=pw></form>'
                f"<script>window.pwned = 1</script>\n![t](http://tracker.example/x.png)\n{FAKE_RECORD}")

MISSING = f"Debian's Chromium is not installed at {CHROMIUM}"


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """Chromium, or a skip; under CI (CI=true) a failure, since these tests alone guard hostile notes."""
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{MISSING}, and CI=true: the browser tests must run in CI")
        pytest.skip(MISSING)
    return CHROMIUM


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    with running_server(model_dir, tmp / "feedback", tmp / "app.log") as running:
        yield running


@contextlib.contextmanager
def open_page(url: str, width: int = 1280):
    """A headless Chromium page of `width` px at `url`, with the walks' timeout."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        yield page
        browser.close()


def analyse_example(page, name: str) -> None:
    """Pick example `name`, wait until its preview shows (as a user sees it arrive), then press Analyse."""
    from playwright.sync_api import expect

    page.get_by_text(name, exact=True).click()
    expect(page.locator(".block", has_text="Your X-ray").locator("img").first).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Analyse", exact=True).click()


def expect_shown(page, locator, server: Server) -> None:
    """Wait for `locator`; if it never shows, fail with the page's messages and the app's log, which say why."""
    from playwright.sync_api import expect

    try:
        expect(locator).to_be_visible(timeout=TIMEOUT_MS)
    except AssertionError as error:
        toasts = page.locator(".toast-body").all_inner_texts()
        raise AssertionError(f"{error}\npage messages: {toasts}\napp log:\n{server.log_tail()}") from None


@pytest.fixture
def page(server):
    with open_page(server.url) as page:
        yield page


def test_a_reader_analyses_an_example_and_flags_it_as_wrong(page, server, model_dir):
    from playwright.sync_api import expect

    analyse_example(page, EXAMPLE)
    decision = page.get_by_text(DECISION)
    expect_shown(page, decision, server)
    label, shown_probability = DECISION.search(decision.inner_text()).groups()

    expected = load_predictor(model_dir).predict(REPO / "examples" / EXAMPLE)
    assert (label, shown_probability) == (expected.label, f"{expected.probability:.2f}")
    positive_bar = page.get_by_role("meter", name="COVID-19 positive")
    assert float(positive_bar.get_attribute("aria-valuenow")) == pytest.approx(100 * expected.probability, abs=1)
    overlay = page.locator(".block", has_text="Grad-CAM overlay").locator("img").first
    expect(overlay).to_be_visible(timeout=TIMEOUT_MS)
    assert overlay.evaluate(LOADED_SIZE)[0] > 0

    page.get_by_text("Flag as wrong (radiologists)").click()
    right_label = "negative" if "positive" in label else "positive"
    page.get_by_role("radio", name=f"COVID-19 {right_label}").check()
    page.get_by_label("Your name").fill("dr_browser")
    page.get_by_label("Note (optional)").fill("checked by a second reader")
    page.get_by_role("button", name="Flag as wrong", exact=True).click()
    confirmation = page.get_by_text(RECORD)
    expect(confirmation).to_be_visible(timeout=TIMEOUT_MS)
    record_id = int(RECORD.search(confirmation.inner_text()).group(1))
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    (row,) = [c for c in CorrectionStore(server.feedback_root).all() if c.reader == "dr_browser"]
    assert row.id == record_id
    assert (row.correct_label, row.reader, row.note, row.original_filename) == (
        right_label, "dr_browser", "checked by a second reader", EXAMPLE)
    assert (row.predicted_label, f"{row.probability:.2f}") == (label.split()[-1], shown_probability)
    np.testing.assert_array_equal(read_grey(row.image_path), read_grey(REPO / "examples" / EXAMPLE))


def test_a_hostile_note_is_not_shown_to_a_later_visitor(page, server):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect

    from space.presentation import REVIEWED

    client = Client(server.url, verbose=False, analytics_enabled=False)
    client.predict(handle_file(str(REPO / "examples" / NOTE_EXAMPLE)), "positive", "dr_note", "", HOSTILE_NOTE,
                   api_name="/flag")
    analyse_example(page, NOTE_EXAMPLE)
    cell = page.get_by_text(REVIEWED[:40]).last
    expect_shown(page, cell, server)
    page.screenshot(path=str(SCREENSHOT.with_name("xray-covid-browser-note.png")), full_page=True)

    text = page.locator("body").inner_text()
    assert "dr_note" not in text and FAKE_RECORD not in text and "dr_chief" not in text
    assert page.locator("form, input[name=pw], img[src*='tracker.example']").count() == 0
    assert page.evaluate("[...document.scripts].some(s => s.textContent.includes('pwned'))") is False
    assert page.evaluate("window.pwned") is None


REVIEWER = ("dr_review", "review-pass")
REVIEW_EXAMPLE = "covid-2.jpg"
REVIEW_NOTE = "**not** covid <i>plain</i>"


@pytest.fixture(scope="module")
def reader_server(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reviewing")
    env = {"XRAY_READERS": f"{REVIEWER[0]}:{REVIEWER[1]}"}
    with running_server(model_dir, tmp / "feedback", tmp / "app.log", env) as running:
        yield running


def test_a_reader_flags_then_reviews_filters_and_exports_the_corrections(reader_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600}, accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(reader_server.url)
        analyse_example(page, REVIEW_EXAMPLE)
        decision = page.get_by_text(DECISION)
        expect_shown(page, decision, reader_server)
        said = DECISION.search(decision.inner_text()).group(1)
        right, wrong = ("negative", "positive") if said.endswith("positive") else ("positive", "negative")
        page.get_by_text("Flag as wrong (radiologists)").click()
        page.get_by_role("radio", name=f"COVID-19 {right}").check()
        page.get_by_label("Reader name (your account)").fill(REVIEWER[0])
        page.get_by_label("Password", exact=True).fill(REVIEWER[1])
        page.get_by_label("Note (optional)").fill(REVIEW_NOTE)
        page.get_by_role("button", name="Flag as wrong", exact=True).click()
        expect(page.get_by_text(RECORD)).to_be_visible(timeout=TIMEOUT_MS)

        page.get_by_role("tab", name="Corrections (readers)").click()
        page.get_by_label("Reviewing reader").fill(REVIEWER[0])
        page.get_by_label("Reviewer's password").fill(REVIEWER[1])
        page.get_by_role("button", name="Sign in and show corrections").click()
        panel = page.get_by_role("tabpanel")
        note = panel.get_by_test_id("cell-0-7")
        expect(note).to_have_text(REVIEW_NOTE, timeout=TIMEOUT_MS)
        assert panel.get_by_test_id("cell-0-5").inner_text() == REVIEWER[0]
        assert note.locator("i, b, strong, em").count() == 0
        thumbnail = panel.locator(".block", has_text="Thumbnails").locator("img").first
        expect(thumbnail).to_be_visible(timeout=TIMEOUT_MS)

        panel.get_by_label("Filter: label").click()
        page.get_by_role("option", name=f"COVID-19 {wrong}").click()
        expect(panel.get_by_text("0 corrections match")).to_be_visible(timeout=TIMEOUT_MS)
        expect(panel.get_by_text(REVIEW_NOTE)).to_have_count(0, timeout=TIMEOUT_MS)
        panel.get_by_label("Filter: label").click()
        page.get_by_role("option", name=f"COVID-19 {right}").click()
        expect(panel.get_by_text("1 correction matches")).to_be_visible(timeout=TIMEOUT_MS)
        expect(note).to_have_text(REVIEW_NOTE, timeout=TIMEOUT_MS)
        expect(thumbnail).to_be_visible(timeout=TIMEOUT_MS)
        assert max(thumbnail.evaluate(LOADED_SIZE)) == 96

        page.get_by_role("button", name="Download the export (zip)").click()
        link = panel.locator(".block", has_text="Export: covid/").get_by_role("link").first
        with page.expect_download() as download:
            link.click()
        page.screenshot(path=str(SCREENSHOT.with_name("xray-covid-browser-review.png")), full_page=True)
        browser_zip = tmp_path / "export.zip"
        download.value.save_as(browser_zip)
        browser.close()
    names = zipfile.ZipFile(browser_zip).namelist()
    assert "MANIFEST.csv" in names and any(name.startswith(f"{FOLDERS[right]}/") for name in names)


def test_an_out_of_scope_upload_gets_the_reason_and_no_probability_bar_or_overlay(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from model.artifact import DEFAULT_ARTIFACT

    lateral = REPO / "tests" / "fixtures" / "outofscope" / "lateral.png"
    with running_server(DEFAULT_ARTIFACT, tmp_path / "feedback", tmp_path / "app.log",
                        {"XRAY_PRECISION": "float32"}) as running, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(running.url)
        page.locator("input[type=file]").first.set_input_files(str(lateral))
        expect(page.get_by_text("Not answered: this input is out of scope")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_text("This looks like a lateral view").first).to_be_visible()
        page.screenshot(path=str(tmp_path.parent / "xray-covid-out-of-scope.png"), full_page=False)
        assert page.get_by_role("meter", name="COVID-19 positive").count() == 0
        overlay = page.locator(".block", has_text="Grad-CAM overlay").locator("img")
        assert overlay.count() == 0 or not overlay.first.is_visible()
        browser.close()


HOSTILE_HEADERS = [  # one DICOM each: a word the header check refuses on, then markup an uploader typed after it
    ("BodyPartExamined", "KNEE [SIGN IN AGAIN](http://evil.example/login)"),
    ("ViewPosition", "LL **bold** <img src=http://evil.example/x.png>"),
    ("BodyPartExamined", "SKULL <form action=http://evil.example/f><input name=pw></form>"),
]


def hostile_dicom(folder: Path, number: int, keyword: str, value: str) -> Path:
    """An example X-ray as a DICOM whose `keyword` holds `value` (as LO in UTF-8, so any text fits)."""
    from pydicom.datadict import tag_for_keyword

    from tests.badfiles import _dicom, _dicom_bytes

    ds = _dicom(read_grey(REPO / "examples" / NOTE_EXAMPLE), SpecificCharacterSet="ISO_IR 192")
    ds.add_new(tag_for_keyword(keyword), "LO", value)
    path = folder / f"hostile-{number}.dcm"
    path.write_bytes(_dicom_bytes(ds))
    return path


def test_hostile_dicom_header_text_is_shown_as_code_never_as_a_link_image_or_form(tmp_path):
    """A refusal quotes the header; a link, bold text, a remote image or a form typed into it stays text, and the
    page asks no other host for anything (requests elsewhere are recorded and blocked, so none leaves the machine)."""
    from playwright.sync_api import expect, sync_playwright

    model = add_gate(make_model(tmp_path / "model"))
    uploads = [hostile_dicom(tmp_path, i, keyword, value) for i, (keyword, value) in enumerate(HOSTILE_HEADERS)]
    requested: list[str] = []
    with running_server(model, tmp_path / "feedback", tmp_path / "app.log") as running, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda request: requested.append(request.url))
        page.route(lambda url: not url.startswith(running.url), lambda route: route.abort())
        for upload, (_, value) in zip(uploads, HOSTILE_HEADERS):
            page.goto(running.url)
            page.locator("input[type=file]").first.set_input_files(str(upload))
            expect(page.get_by_text("Not answered: this input is out of scope")).to_be_visible(timeout=TIMEOUT_MS)
            shown = page.locator("a[href*='evil.example'], img[src*='evil.example'], form, input[name=pw]")
            assert shown.count() == 0 and page.get_by_role("link", name="SIGN IN AGAIN").count() == 0
            assert page.locator("strong, b", has_text="bold").count() == 0
            assert page.locator("code", has_text=value).inner_text() == value
        page.screenshot(path=str(SCREENSHOT.with_name("xray-covid-browser-header.png")), full_page=True)
        browser.close()
    assert [url for url in requested if not url.startswith((running.url, "data:", "blob:"))] == []
