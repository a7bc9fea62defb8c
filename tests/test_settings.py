"""settings.py: every environment variable documented once, read when asked, and the README's table matches it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import settings
from model.markdown import table
from model.serving.measure import Serving, _key, measured_serving

REPO = Path(__file__).resolve().parents[1]
READ_CALL = re.compile(r"""(?:text|_whole|_positive_or_default)\("([A-Z_]+)\"""")


def readme_table() -> list[str]:
    """The README's table of environment variables, as lines."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index("| variable | default | meaning |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_the_readme_table_is_the_settings_module_s():
    rows = [(f"`{s.name}`", s.default, s.meaning) for s in settings.SETTINGS]
    expected = table(("variable", "default", "meaning"), rows)
    assert readme_table() == expected, "README.md's table of environment variables differs from settings.SETTINGS; " \
                                       "replace it with:\n" + "\n".join(expected)


def test_every_documented_variable_is_read_and_every_read_one_documented():
    source = (REPO / "settings.py").read_text()
    assert set(READ_CALL.findall(source)) == settings.NAMES
    assert len(settings.NAMES) == len(settings.SETTINGS)


def test_an_undocumented_variable_cannot_be_read():
    with pytest.raises(KeyError, match="SETTINGS"):
        settings.text("XRAY_SOMETHING_NEW")


def test_the_batch_size_is_read_when_asked_and_unset_means_measured(monkeypatch):
    monkeypatch.setenv("XRAY_MAX_BATCH_SIZE", "3")
    assert settings.max_batch_size() == 3
    monkeypatch.setenv("XRAY_MAX_BATCH_SIZE", "0")
    assert settings.max_batch_size() == 1
    monkeypatch.delenv("XRAY_MAX_BATCH_SIZE")
    assert settings.max_batch_size() is None


def test_the_precision_cache_is_the_one_the_environment_names_at_the_time(monkeypatch, tmp_path):
    card = SimpleNamespace(version="v-test", gate=None)
    cache = tmp_path / "precision.json"
    planted = {"precision": "bfloat16", "batch_size": 4, "reason": "planted"}
    cache.write_text(json.dumps({_key(card, "auto", 4): planted}))
    monkeypatch.setenv("XRAY_PRECISION_CACHE", str(cache))

    def never(precision):
        raise AssertionError("measured although the choice was cached")

    assert measured_serving(never, card, "auto", 4) == Serving(**planted)


@pytest.mark.parametrize("name, value, read", [
    ("XRAY_MAX_BATCH_SIZE", "many", settings.max_batch_size),
    ("XRAY_FEEDBACK_QUOTA_MB", "-1", settings.store_quota_bytes),
    ("PORT", "http", settings.server_port),
    ("XRAY_REQUESTS_PER_CLIENT", "four", settings.requests_per_client),
    ("XRAY_UPLOAD_MB_KEPT", "1.5", settings.upload_limits),
])
def test_a_malformed_number_is_refused_naming_the_variable(name, value, read):
    with pytest.raises(ValueError, match=name):
        read({name: value})


def test_lenient_values_keep_their_defaults():
    assert settings.decode_memory_bytes({"XRAY_DECODE_MEMORY_MB": "lots"}) == 1024 * 2**20
    assert settings.decode_memory_bytes({"XRAY_DECODE_MEMORY_MB": " 5 "}) == 5 * 2**20
    assert settings.network_slots({"GRADIO_DEFAULT_CONCURRENCY_LIMIT": "0"}) == 1
    assert settings.server_port({"GRADIO_SERVER_PORT": "8000"}) == 8000
    assert settings.server_port({"PORT": "9000", "GRADIO_SERVER_PORT": "8000"}) == 9000
    assert settings.blocked_paths({"GRADIO_BLOCKED_PATHS": "/a, ,/b"}) == ["/a", "/b"]
    assert settings.model_path({}) is None and settings.model_path({"MODEL_PATH": "m"}) == Path("m")


def test_the_per_client_limits_are_read_when_asked_and_0_is_no_limit():
    assert settings.requests_per_client({}) == 4 and settings.requests_per_client({"XRAY_REQUESTS_PER_CLIENT": "0"}) == 0
    assert settings.upload_limits({}) == (30, 200 * 2**20, 1024 * 2**20)
    assert settings.upload_limits({"XRAY_UPLOADS_PER_MINUTE": "3", "XRAY_UPLOAD_MB_PER_MINUTE": "1",
                                   "XRAY_UPLOAD_MB_KEPT": "0"}) == (3, 2**20, 0)
    assert settings.gradio_cache({"GRADIO_TEMP_DIR": "/srv/cache"}) == Path("/srv/cache")
    assert settings.gradio_cache({}).name == "gradio"
