"""Shared test fixtures."""

from pathlib import Path

import pytest

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "xrays"


@pytest.fixture
def fixture_dir() -> Path:
    """The small real X-ray set: covid/, normal/, other_pneumonia/ and MANIFEST.csv."""
    return FIXTURE_DIR
