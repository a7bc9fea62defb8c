"""The tuner's recipe: the flags that made an exported model, replayed with what a later command line changes."""

import json

import pytest

from tuning.__main__ import parse_args
from tuning.recipe import RECIPE_FILE, RecipeError, expand, read_recipe, without_per_run, write_recipe

SHIPPED = ["--data", "dev", "--external", "ext", "--ood", "ood", "--operating-point", "unseen_sources",
           "--target-sensitivity", "0.9", "--reference-normals", "more", "--out", "runs/search", "--export",
           "model/artifacts/default", "--overwrite", "--space", "epochs=10,20", "--feedback=old", "--max-trials", "20"]


def test_the_recipe_keeps_what_makes_the_model_and_drops_where_one_run_writes(tmp_path):
    write_recipe(tmp_path, SHIPPED)
    assert read_recipe(tmp_path) == ["--data", "dev", "--external", "ext", "--ood", "ood", "--operating-point",
                                     "unseen_sources", "--target-sensitivity", "0.9", "--reference-normals", "more",
                                     "--space", "epochs=10,20", "--max-trials", "20"]
    assert json.loads((tmp_path / RECIPE_FILE).read_text())["command"] == "python -m tuning"


def test_a_recipe_replayed_keeps_the_gate_and_operating_point_and_takes_the_new_flags(tmp_path):
    write_recipe(tmp_path, SHIPPED)
    args = parse_args(["--recipe", str(tmp_path), "--feedback", "runs/corrections", "--out", "runs/again",
                       "--space", "epochs=5"])
    assert (str(args.ood), args.operating_point, args.target_sensitivity) == ("ood", "unseen_sources", 0.9)
    assert (str(args.feedback), str(args.out), str(args.export)) == ("runs/corrections", "runs/again", "runs/again/best")
    assert args.space["epochs"] == (5,) and not args.overwrite
    assert expand(["--max-trials", "3"]) == ["--max-trials", "3"]


def test_a_folder_without_a_readable_recipe_is_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(RecipeError, match="no recipe.json"):
        read_recipe(tmp_path)
    (tmp_path / RECIPE_FILE).write_text("{not json")
    with pytest.raises(SystemExit) as stop:
        parse_args(["--recipe", str(tmp_path), "--out", "x"])
    assert stop.value.code == 2 and "unreadable" in capsys.readouterr().err
    assert without_per_run(["--worker-id", "w1", "--chief=h:1", "--seed", "3"]) == ["--seed", "3"]
