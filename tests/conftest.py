"""Shared test fixtures."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "xrays"


@pytest.fixture
def fixture_dir() -> Path:
    """The small real X-ray set: covid/, normal/, other_pneumonia/ and MANIFEST.csv."""
    return FIXTURE_DIR


@pytest.fixture(scope="session", autouse=True)
def gradio_cache_per_process():
    """A Gradio cache folder of this test process's own (servers it starts as subprocesses get one each).

    Gradio keeps uploads and outputs under the hash of their bytes in GRADIO_TEMP_DIR and deletes every file its
    Blocks made when a server stops: with one shared folder, a server stopping in the other test process deleted
    the copy of an example another server was still using ("no such file" when flagging it)."""
    folder = tempfile.mkdtemp(prefix="xray-covid-tests-gradio-")
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = folder
    yield Path(folder)
    if before is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = before
    shutil.rmtree(folder, ignore_errors=True)
