"""Readers' files that leave by URL (the export zip, the review's thumbnails): each reader's own, gone after a while.

Gradio serves a returned file from its cache under a URL that anyone holding it can fetch, for as long as the copy
is kept (an hour for this app's cache). What a signed-in reader downloads is patients' images, so each such file
and Gradio's copy of it are deleted LIFETIME_S seconds after they are handed out. Gradio keeps one copy per content
(the hash of the bytes), so two readers handed the same thumbnail would share it and the first one's expiry would
take the second one's away: every file handed out carries a random token (no patient data) that makes it its own.
"""

from __future__ import annotations

import shutil
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Iterable

from gradio.processing_utils import hash_file
from gradio.utils import get_upload_folder
from PIL import Image
from PIL.PngImagePlugin import PngInfo

LIFETIME_S = 600.0
TOKEN_KEY = "xray-covid-handout"
"""The PNG text chunk holding a handed-out picture's token."""


def save_own_png(picture: Image.Image, path: Path) -> Path:
    """Save the picture as a PNG whose bytes are this handout's alone (a random token in a text chunk)."""
    info = PngInfo()
    info.add_text(TOKEN_KEY, uuid.uuid4().hex)
    picture.save(path, format="PNG", pnginfo=info)
    return path


def make_own_zip(path: Path) -> Path:
    """Give a zip archive bytes of its own (a random token as the archive's comment); its members are unchanged."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.comment = f"{TOKEN_KEY} {uuid.uuid4().hex}".encode()
    return path


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
