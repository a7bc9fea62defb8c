"""The shortcut audit finds data sets that file facts alone can solve, and finds nothing where there is nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from model.data import Example
from model.training.shortcut import FACTS, file_facts, shortcut_audit


def make_examples(tmp_path: Path, confounded: bool, n: int = 24) -> list[Example]:
    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        label = i % 2
        size, kind = ((300 + i, "JPEG") if label else (224, "PNG")) if confounded else (224, "PNG")
        path = tmp_path / f"{i}.{kind.lower()}"
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path, kind)
        examples.append(Example(path, label, "covid" if label else "normal", f"p{i}", "a" if i < n // 2 else "b"))
    return examples


def test_file_facts_read_headers(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (300, 200)).save(path)
    facts = dict(zip(FACTS, file_facts(path)))
    assert (facts["width"], facts["height"], facts["channels"], facts["is_png"], facts["is_jpeg"]) == (300, 200, 3, 1, 0)


def test_a_confounded_set_is_solved_by_file_facts_and_a_clean_one_is_not(tmp_path):
    (tmp_path / "c").mkdir()
    confounded = shortcut_audit(make_examples(tmp_path / "c", True))
    assert confounded["all"]["file_facts_auc"] > 0.95
    clean_dir = tmp_path / "k"
    clean_dir.mkdir()
    clean = shortcut_audit(make_examples(clean_dir, False), model_probs=np.linspace(0, 1, 24))
    assert clean["all"]["file_facts_auc"] <= 0.75
    assert clean["all"]["model_auc"] is not None and set(clean) == {"all", "a", "b"}
