"""Every tracked file over 10 MB matches an LFS pattern of .gitattributes (the Space stores those through LFS/Xet)."""

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIMIT = 10 * 1024 * 1024
LFS = "filter=lfs"


def lfs_patterns(gitattributes: Path) -> list[str]:
    """The patterns of .gitattributes lines that route files through LFS."""
    lines = gitattributes.read_text().splitlines() if gitattributes.is_file() else []
    return [line.split()[0] for line in lines if LFS in line.split()[1:] and not line.startswith("#")]


def routed_to_lfs(path: str, patterns: list[str]) -> bool:
    """Whether git would match `path` to one of the patterns (no slash: the basename; else the whole path)."""
    return any(fnmatch.fnmatch(path if "/" in p else Path(path).name, p.lstrip("/")) for p in patterns)


def tracked_files() -> list[str]:
    """git ls-files of this checkout; skips the test with the reason when there is no git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed, so the tracked files cannot be listed")
    result = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout ({result.stderr.strip()})")
    return [name for name in result.stdout.split("\0") if name]


def test_the_model_formats_are_routed_to_lfs():
    patterns = lfs_patterns(REPO / ".gitattributes")
    for name in ("model/artifacts/default/model.keras", "weights/vgg16.weights.h5", "x.onnx", "f.npz", "m.safetensors"):
        assert routed_to_lfs(name, patterns), name
    assert not routed_to_lfs("model/card.py", patterns)


def test_every_tracked_file_over_10_mb_is_routed_to_lfs():
    patterns = lfs_patterns(REPO / ".gitattributes")
    large = [name for name in tracked_files() if (REPO / name).is_file() and (REPO / name).stat().st_size > LIMIT]
    unrouted = [name for name in large if not routed_to_lfs(name, patterns)]
    assert not unrouted, f"tracked files over 10 MB without an LFS pattern in .gitattributes: {unrouted}"
