"""Readers' files that leave by URL (the export zip, the review's thumbnails): gone from the server after a while.

Gradio serves a returned file from its cache under a URL that anyone holding it can fetch, for as long as the copy
is kept (an hour for this app's cache). What a signed-in reader downloads is patients' images, so each such file
and Gradio's copy of it are deleted LIFETIME_S seconds after they are handed out.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Iterable

from gradio.processing_utils import hash_file
from gradio.utils import get_upload_folder

LIFETIME_S = 600.0


def served_copy(path: Path) -> Path:
    """The folder Gradio's cache keeps its copy of `path` in (gradio.processing_utils.save_file_to_cache)."""
    return Path(get_upload_folder()) / hash_file(path)


def _remove(paths: list[Path]) -> None:
    """Delete each file with Gradio's copy of it (found by its content hash, read here, off the request's path)."""
    for path in paths:
        if path.is_file():
            shutil.rmtree(served_copy(path), ignore_errors=True)
            path.unlink(missing_ok=True)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def expire(paths: Iterable[Path], lifetime_s: float | None = None) -> None:
    """Delete these files (or folders), and the copies Gradio serves them from, after lifetime_s seconds.

    Files before the folders that hold them, so each file is still there to be hashed."""
    timer = threading.Timer(LIFETIME_S if lifetime_s is None else lifetime_s, _remove, [[Path(p) for p in paths]])
    timer.daemon = True
    timer.start()
