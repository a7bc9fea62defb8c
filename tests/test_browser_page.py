"""The page in a real browser around the answer: the model card follows a promoted model without a restart, a refused
input's reason is shown whole, a refused flag says why in the flag panel, and the examples' sources and licences are on
the page. The server runs a copy of the shipped model (it has the input gate), which the last test replaces."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from model.artifact import CARD_FILE, DEFAULT_ARTIFACT
from tests.server import REPO, running_server
from tests.test_browser import TIMEOUT_MS, chromium, open_page  # noqa: F401 (the fixture skips or fails)

READER = ("dr_page", "page-pass")
SWAP_DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return Path(shutil.copytree(DEFAULT_ARTIFACT, tmp_path_factory.mktemp("model") / "default"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    environment = {"XRAY_READERS": f"{READER[0]}:{READER[1]}", "XRAY_PRECISION": "float32", "XRAY_MAX_BATCH_SIZE": "1"}
    with running_server(model_dir, tmp / "feedback", tmp / "app.log", environment) as running:
        yield running


@pytest.fixture
def page(server):
    """A page 900 px wide, where the answer's column is narrow."""
    with open_page(server.url, 900) as page:
        yield page


def install_card(folder: Path, **changes) -> None:
    """Rewrite the artifact's card with `changes`, whole in one step, as a promotion installs a new card."""
    card = folder / CARD_FILE
    written = card.with_suffix(".tmp")
    written.write_text(json.dumps({**json.loads(card.read_text()), **changes}))
    os.replace(written, card)


def card_text(page) -> str:
    return page.locator(".prose", has_text="Model card").last.inner_text()


def test_a_refused_input_s_reason_is_shown_whole(page):
    from playwright.sync_api import expect

    from model.gate import looks_like

    page.locator("input[type=file]").first.set_input_files(str(REPO / "tests/fixtures/outofscope/lateral.png"))
    expect(page.get_by_text("Not answered: this input is out of scope")).to_be_visible(timeout=TIMEOUT_MS)
    box = page.get_by_label("Reason")
    expect(box).to_have_value(looks_like("lateral"))
    scrolled, shown = box.evaluate("box => [box.scrollHeight, box.clientHeight]")
    assert scrolled <= shown + 4, "the reason's box hides part of it behind a scroll bar"


def test_a_wrong_password_leaves_why_in_the_flag_panel_until_the_next_try(page):
    from playwright.sync_api import expect

    page.get_by_text("covid-1.jpg", exact=True).click()
    expect(page.locator(".block", has_text="Your X-ray").locator("img").first).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_text("Flag as wrong (radiologists)").click()
    page.get_by_role("radio", name="COVID-19 negative").check()
    page.get_by_label("Reader name (your account)").fill(READER[0])
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Flag as wrong", exact=True).click()
    refused = page.get_by_test_id("markdown").filter(has_text="Not recorded.")
    expect(refused).to_be_visible(timeout=TIMEOUT_MS)
    assert "password" in refused.inner_text().lower()
    toast = page.locator(".toast-body")
    expect(toast).to_be_visible()
    toast.locator(".toast-close").first.click()  # what a reader does with it, or what its ten seconds do
    expect(toast).to_have_count(0)
    expect(refused).to_be_visible()

    page.get_by_label("Password", exact=True).fill(READER[1])
    page.get_by_role("button", name="Flag as wrong", exact=True).click()
    expect(page.get_by_text("recorded as record #")).to_be_visible(timeout=TIMEOUT_MS)
    expect(refused).to_have_count(0)


def test_the_examples_sources_and_licences_are_on_the_page(page):
    from playwright.sync_api import expect

    page.get_by_text("About the examples").click()
    expect(page.get_by_text("COVID-19 Image Data Collection: Prospective")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("courtesy of the NIH Clinical Center")).to_be_visible()


def test_a_reloaded_page_shows_the_card_of_the_model_promoted_while_the_app_ran(page, model_dir, tmp_path):
    """Last in this file: it replaces the served model (the shipped one, gated) by a small one without a gate."""
    from playwright.sync_api import expect

    from model.artifact import install_artifact, load_card
    from model.gate import NO_GATE
    from tests.server import make_model

    before = load_card(model_dir)
    expect(page.get_by_text(f"version {before.version}")).to_be_visible(timeout=TIMEOUT_MS)
    assert f"Decision threshold: {before.threshold:.2f}" in card_text(page) and NO_GATE not in card_text(page)

    candidate = make_model(tmp_path / "candidate")
    install_card(candidate, version="promoted-while-serving", threshold=0.42, threshold_rule="chosen for this test")
    install_artifact(candidate, model_dir, "installed by the test")
    deadline = time.monotonic() + SWAP_DEADLINE_S
    while "promoted-while-serving" not in card_text(page) and time.monotonic() < deadline:
        time.sleep(1.0)  # the first load after the install starts loading the new model; a later one shows it
        page.reload()
        expect(page.get_by_text("Model card")).to_be_visible(timeout=TIMEOUT_MS)
    shown = card_text(page)
    assert "version promoted-while-serving" in shown and before.version not in shown
    assert "Decision threshold: 0.42 (chosen for this test)" in shown and NO_GATE in shown
