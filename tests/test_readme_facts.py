"""What the README tells a newcomer matches the code: the formats the app reads and the API's outputs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from model.images import FORMATS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_the_readme_names_every_format_the_app_reads():
    listed = re.search(r"Upload an? (.+?) file", " ".join(README.split())).group(1)
    assert set(re.split(r", | or ", listed)) == {f.name for f in FORMATS}


def test_the_api_snippet_unpacks_predict_s_outputs_by_their_names():
    results = next(node.value for node in ast.walk(ast.parse((REPO / "app.py").read_text()))
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "results")
    unpacked = re.search(r"^(.+) = client\.predict\(\n\s+handle_file\(.+\), api_name=\"/predict\"\)", README,
                         re.MULTILINE).group(1).split(", ")
    assert len(unpacked) == len(results.elts)
    assert unpacked[2] == "overlay_jpeg" and "overlay_png" not in README, "the overlay is sent as JPEG (app.py)"
