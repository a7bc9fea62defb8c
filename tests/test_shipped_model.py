"""The model committed as the app's default: loadable, documented, and giving the outputs examples/README.md lists."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from model.artifact import CARD_FILE, DEFAULT_ARTIFACT, MODEL_FILE
from model.framing import FRAMINGS, border
from model.images import load_bytes, read_grey
from model.serving.predictor import load_predictor

EXAMPLES = Path(__file__).parents[1] / "examples"
ROW = re.compile(r"^\| `(?P<file>[^`]+)` \|.*\| (?P<probability>[0-9.]+), (?P<decision>COVID-19 (positive|negative)) \((?P<split>\w+)\) \|$")


@pytest.fixture(scope="module")
def predictor():
    """float32, the precision examples/README.md's outputs and the card's threshold were computed in."""
    return load_predictor(DEFAULT_ARTIFACT, "float32")


def listed_outputs() -> list[dict]:
    rows = [ROW.match(line) for line in (EXAMPLES / "README.md").read_text().splitlines()]
    return [row.groupdict() for row in rows if row]


def test_artifact_fits_the_size_budget_and_has_its_card():
    assert (DEFAULT_ARTIFACT / MODEL_FILE).stat().st_size <= 64 * 1000 * 1000
    assert (DEFAULT_ARTIFACT / CARD_FILE).is_file()


def test_card_states_origin_threshold_and_held_out_metrics(predictor):
    card = predictor.card
    assert card.input_size == predictor.input_size == 256
    assert "HED" in card.base_weights_origin
    assert 0 < card.threshold < 1
    for section in ("validation", "test"):
        assert 0 <= card.metrics[section]["auc"] <= 1
    pooled = card.cross_validation["pooled_out_of_fold"]
    assert pooled["auc_ci95"][0] <= pooled["auc"] <= pooled["auc_ci95"][1]
    assert "not for diagnosis" in card.intended_use.lower()


def test_every_example_is_listed_with_the_output_the_model_gives(predictor):
    listed = listed_outputs()
    gallery = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    assert sorted(row["file"] for row in listed) == gallery
    assert {row["decision"] for row in listed} == {"COVID-19 positive", "COVID-19 negative"}
    for row in listed:
        result = predictor.predict(EXAMPLES / row["file"])
        assert result.probability == pytest.approx(float(row["probability"]), abs=0.0015), row["file"]
        assert result.label == row["decision"], row["file"]


def test_bfloat16_moves_no_fixture_probability_past_0_03_and_changes_no_decision(predictor):
    from tests.conftest import FIXTURE_DIR

    files = sorted(p for p in FIXTURE_DIR.glob("*/*") if p.suffix in (".png", ".jpg"))
    bf16 = load_predictor(DEFAULT_ARTIFACT, "bfloat16")
    precisions = []
    for start in range(0, len(files), 8):
        chunk = files[start : start + 8]
        for path, full, half in zip(chunk, predictor.predict_many(chunk), bf16.predict_many(chunk)):
            assert abs(full.probability - half.probability) <= 0.03, path.name
            assert full.positive == half.positive, path.name
            if half.precision == "float32":  # near a threshold: recomputed, so exactly the float32 answer
                assert half.probability == pytest.approx(full.probability, abs=1e-6), path.name
            precisions.append(half.precision)
    assert precisions.count("bfloat16") > len(files) // 2, precisions


@pytest.mark.parametrize("framing", [name for name in FRAMINGS if name != "inverted"])
def test_every_example_framed_as_users_frame_films_gets_the_decision_of_the_original(predictor, framing):
    """A border, a screen or a 90% crop around a film changes no example's answer (a third to half of all
    decisions changed before the model found the film and read its lungs)."""
    files = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    greys = [read_grey(load_bytes(path)) for path in files]
    originals = predictor.predict_greys(greys)
    framed = predictor.predict_greys([FRAMINGS[framing](grey) for grey in greys])
    for path, original, copy in zip(files, originals, framed):
        assert original.answered and copy.answered, (path.name, copy.reason)
        assert copy.label == original.label, (path.name, original.probability, copy.probability)


def test_an_inverted_example_is_read_inverted_back_with_the_decision_of_the_original(predictor):
    for path in sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg")):
        grey = read_grey(load_bytes(path))
        original, inverted = predictor.predict_greys([grey, FRAMINGS["inverted"](grey)])
        assert inverted.inverted and not original.inverted, path.name
        assert inverted.label == original.label, (path.name, original.probability, inverted.probability)


def test_a_bordered_childs_film_is_out_of_scope_through_the_command_line(tmp_path):
    child = next((Path(__file__).parent / "fixtures" / "outofscope").glob("child*"))
    framed = tmp_path / "child-bordered.png"
    Image.fromarray(border(read_grey(load_bytes(child)), 0.2, 0)).save(framed)
    run = subprocess.run([sys.executable, "-m", "model.predict", str(framed), "--precision", "float32"],
                         capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300)
    assert run.returncode == 0, run.stderr
    assert "out of scope" in run.stdout, run.stdout
