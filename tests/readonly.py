"""A read-only view of a folder for tests: a read-only bind mount where this process may make one, else a skip."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only_mount(folder: Path, view: Path) -> Iterator[Path]:
    """`view` showing `folder` read-only (a bind mount, remounted ro) for the block; skips the test with the reason
    when mounting is not permitted (not root, or a container without CAP_SYS_ADMIN). chmod is no substitute: root
    writes through it."""
    view.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot make a read-only bind mount here: {made.stderr.strip() or 'mount failed'}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True, text=True)
        if remount.returncode:
            pytest.skip(f"cannot remount the bind mount read-only: {remount.stderr.strip()}")
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)
