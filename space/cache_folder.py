"""This app's own folder in Gradio's cache, and at start the removal of the folders of instances that are gone (a
killed instance's uploads: Gradio deletes the files it made only when its server stops cleanly)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from pathlib import Path

PREFIX = "instance-"
LOCK_SUFFIX = ".lock"
_HELD: list[int] = []
"""The lock of each folder this process claimed, open (so held) until the process ends, however it ends."""


def remove_stale(base: Path) -> list[Path]:
    """Remove base's instance folders whose lock no process holds (their instance has ended); the ones removed."""
    removed = []
    for lock in sorted(base.glob(f"{PREFIX}*{LOCK_SUFFIX}")):
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            folder = lock.with_suffix("")
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def claim(base: Path) -> Path:
    """A new folder of this process's own under base, its lock held for the life of the process, after removing the
    folders of instances that are gone. The lock is taken under a temporary name and renamed into place once the
    folder exists, so another instance starting at the same time never finds it unheld."""
    base.mkdir(parents=True, exist_ok=True)
    remove_stale(base)
    name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
    fd, claiming = tempfile.mkstemp(dir=base, prefix=".claiming-")
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"held by process {os.getpid()}\n".encode())
    folder = base / name
    folder.mkdir(mode=0o700)
    os.rename(claiming, base / f"{name}{LOCK_SUFFIX}")
    _HELD.append(fd)
    return folder
