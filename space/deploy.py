"""Deploy to a Hugging Face Space: upload a snapshot of what the Space runs, its binaries stored the way the Hub
requires (LFS/Xet), instead of a `git push` of the whole history.

    python -m space.deploy --space OWNER/NAME            # needs HF_TOKEN (a token with write access)
    python -m space.deploy --dry-run                     # lists every file and its size; no network

The snapshot is the app (app.py, settings.py, handoff.py, space/, model/'s code, feedback/), README.md (whose front matter
configures the Space), .gitattributes, examples/ and the shipped model (model/artifacts/default); the Space's
requirements.txt is space/requirements.txt, what the app runs (the project's requirements.txt, with the training and
test tools, stays here). Never tests/, benchmarks/, tuning/, other artifacts, caches or .git. Files removed here stay
on the Space.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import settings

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = ("app.py", "settings.py", "handoff.py", "README.md", ".gitattributes", "space", "model", "feedback", "examples")
RUNTIME_REQUIREMENTS = Path("space/requirements.txt")
RENAMED = {RUNTIME_REQUIREMENTS: Path("requirements.txt")}
"""Files the Space gets under another name: its requirements.txt is the runtime list, not the development one."""
ARTIFACTS = Path("model/artifacts")
SHIPPED = ARTIFACTS / "default"
SKIPPED_FOLDERS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".git"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".part", ".tmp")
SPACE_NAME = re.compile(r"[\w.-]+/[\w.-]+")
USAGE_ERROR = 2
"""The exit status of a user error, as for every command of the project (model.commands.cli)."""
FAILED = 1


def snapshot_files(root: Path = REPO) -> list[Path]:
    """Every file of the snapshot, relative to root, sorted; of model/artifacts only the shipped model's folder."""
    files = []
    for entry in SNAPSHOT:
        top = root / entry
        candidates = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in candidates:
            relative = path.relative_to(root)
            if set(relative.parts[:-1]) & SKIPPED_FOLDERS or relative.suffix in SKIPPED_SUFFIXES:
                continue
            if relative.is_relative_to(ARTIFACTS) and not relative.is_relative_to(SHIPPED):
                continue
            files.append(relative)
    needed = ("app.py", "README.md", RUNTIME_REQUIREMENTS.as_posix())
    missing = [entry for entry in needed if not (root / entry).is_file()]
    if missing or not (root / SHIPPED).is_dir():
        raise FileNotFoundError(f"{root} lacks {', '.join(missing) or SHIPPED}: run this from a checkout of the "
                                "project")
    return sorted(files)


def in_space(relative: Path) -> Path:
    """Where a snapshot file goes in the Space: its own path, or its RENAMED one."""
    return RENAMED.get(relative, relative)


def size_text(n: int) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (B, KB, MB, GB)."""
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def listing(files: Sequence[Path], root: Path = REPO) -> list[str]:
    """One line per file (its size, its path in the Space, and where it comes from if renamed) and a line with the
    total."""
    sizes = [(root / f).stat().st_size for f in files]
    lines = [f"{size_text(size):>10}  {in_space(f).as_posix()}" + (f"  (from {f.as_posix()})" if f in RENAMED else "")
             for f, size in zip(files, sizes)]
    return [*lines, f"{size_text(sum(sizes)):>10}  total, {len(files)} files"]


def upload(space: str, files: Sequence[Path], token: str, root: Path = REPO) -> str:
    """Create the Space if it does not exist, then upload the files in one commit; the commit's address."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=in_space(f).as_posix(), path_or_fileobj=str(root / f)) for f in files]
    commit = api.create_commit(space, operations, repo_type="space",
                               commit_message="Deploy a snapshot with python -m space.deploy")
    return commit.commit_url


class Parser(argparse.ArgumentParser):
    """A usage error in one line naming --help, exit status 2 (model.commands.cli.Parser's convention, without its --verbose
    and its imports of the model's data and configuration)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m space.deploy", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", help="the Space to upload to, OWNER/NAME (created if missing)")
    parser.add_argument("--dry-run", action="store_true", help="list the files and their sizes; upload nothing")
    args = parser.parse_args(argv)
    if args.space is None and not args.dry_run:
        print("error: say which Space to upload to: --space OWNER/NAME (or --dry-run to list the files)",
              file=sys.stderr)
        return USAGE_ERROR
    if args.space is not None and not SPACE_NAME.fullmatch(args.space):
        print(f"error: --space must be OWNER/NAME, got {args.space!r}", file=sys.stderr)
        return USAGE_ERROR
    try:
        files = snapshot_files()
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    if args.dry_run:
        print("\n".join(listing(files)))
        return 0
    token = settings.hf_token()
    if not token:
        print("error: HF_TOKEN is not set: set it to a Hugging Face token with write access to the Space "
              "(huggingface.co/settings/tokens)", file=sys.stderr)
        return USAGE_ERROR
    from huggingface_hub.errors import HfHubHTTPError

    try:
        address = upload(args.space, files, token)
    except (HfHubHTTPError, OSError) as error:
        print(f"error: the upload to {args.space} failed: {str(error).splitlines()[0]}", file=sys.stderr)
        return FAILED
    print(f"uploaded {len(files)} files to {args.space}: {address}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
