"""The recipe of an exported model: the search command's own flags, saved beside the artifact, so that
`python -m tuning --recipe DIR --feedback ... --out ...` makes the same kind of model again (its gate, operating
point, preprocessing and data included) with what the command line adds or overrides."""

from __future__ import annotations

import json
from pathlib import Path

RECIPE_FILE = "recipe.json"
PER_RUN = {"--out": 1, "--export": 1, "--overwrite": 0, "--feedback": 1, "--recipe": 1, "--chief": 1, "--worker": 1,
           "--worker-id": 1}
"""Flags that say where one run writes or what it adds, never what the model is (each with its number of values)."""


class RecipeError(ValueError):
    """A --recipe folder without a readable recipe."""


def without_per_run(argv: list[str]) -> list[str]:
    """argv less the PER_RUN flags and their values (`--flag value` and `--flag=value` alike)."""
    kept, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
        elif arg.split("=", 1)[0] in PER_RUN:
            skip = 0 if "=" in arg else PER_RUN[arg]
        else:
            kept.append(arg)
    return kept


def recipe_folder(argv: list[str]) -> Path | None:
    """The folder --recipe names in argv, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith("--recipe="):
            return Path(arg.split("=", 1)[1])
        if arg == "--recipe" and i + 1 < len(argv):
            return Path(argv[i + 1])
    return None


def read_recipe(folder: Path) -> list[str]:
    """The flags recorded in folder/recipe.json; RecipeError where there is none or it is unreadable."""
    path = Path(folder) / RECIPE_FILE
    try:
        recorded = json.loads(path.read_text())["args"]
    except FileNotFoundError:
        raise RecipeError(f"--recipe {folder}: no {RECIPE_FILE} there (a model exported by python -m tuning has one)") \
            from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RecipeError(f"--recipe {folder}: {path} is unreadable ({type(error).__name__})") from None
    if not isinstance(recorded, list) or not all(isinstance(a, str) for a in recorded):
        raise RecipeError(f"--recipe {folder}: {path} should hold a list of flags under 'args'")
    return recorded


def expand(argv: list[str]) -> list[str]:
    """argv with the --recipe folder's flags first, so the command line's own flags override them."""
    folder = recipe_folder(argv)
    return [*read_recipe(folder), *argv] if folder else list(argv)


def write_recipe(folder: Path, argv: list[str]) -> Path:
    """Record the flags that made the model exported to `folder` (without the per-run ones)."""
    path = Path(folder) / RECIPE_FILE
    path.write_text(json.dumps({"command": "python -m tuning", "args": without_per_run(argv)}, indent=2) + "\n")
    return path
