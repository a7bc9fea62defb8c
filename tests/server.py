"""The real app as its users meet it: `python app.py` in a subprocess on a free loopback port, started and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
from PIL import Image

from model.config import ModelConfig

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app.py"
EXAMPLES = REPO / "examples"
START_TIMEOUT_S = 180.0


@dataclass
class Server:
    """A running `python app.py`: its URL, process, corrections folder and log file."""

    url: str
    process: subprocess.Popen
    feedback_root: Path
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distinct_xrays(source: Path, folder: Path, count: int) -> list[Path]:
    """`count` PNG copies of a real X-ray, each with one pixel changed so every file has its own SHA-256.

    The app caches predictions by content hash; distinct files make every request run the network.
    """
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.asarray(Image.open(source).convert("L"))
    paths = [folder / f"{Path(source).stem}-{i:04d}.png" for i in range(count)]
    for i, path in enumerate(paths):
        changed = grey.copy()
        changed.flat[i] ^= 1
        Image.fromarray(changed).save(path)
    return paths


def make_model(folder: Path, config: ModelConfig | None = None) -> Path:
    """Save a classifier (default: 64 px, random base, small head) with a 0.5 threshold as an artifact folder."""
    from model.artifact import save_artifact
    from model.card import new_card
    from tests.models import build_model

    config = config or ModelConfig(weights="none", input_size=64, pooling="avg", dense=(8,))
    save_artifact(build_model(config), folder, new_card(config, 0.5, "fixed at 0.5 for tests", {}, {}))
    return Path(folder)


def add_gate(folder: Path, width: int | None = None) -> Path:
    """Give the artifact in `folder` an input gate that lets every image through (so only a DICOM header refuses),
    over `width` features (default: as many as its network gives the gate), recorded in its card."""
    import dataclasses

    from model.artifact import artifact_paths, gate_width, load_artifact
    from model.gate import IN_SCOPE, Gate, save_gate

    model, card = load_artifact(folder)
    d = width or gate_width(model)
    gate = Gate(kinds=(IN_SCOPE, "lateral"), mean=np.zeros(d), scale=np.ones(d), coef=np.zeros((2, d)),
                intercept=np.zeros(2), components=np.zeros((1, d)), variances=np.ones(1), threshold=0.0,
                novelty_threshold=1e9)
    record = {"file": "gate.npz", "version": save_gate(gate, folder), "method": "lets every image through (tests)"}
    artifact_paths(folder)[1].write_text(dataclasses.replace(card, gate=record).to_json())
    return Path(folder)


def start_server(model_path: Path, feedback_root: Path, log: Path, env: dict[str, str] | None = None,
                 timeout: float = START_TIMEOUT_S) -> Server:
    """Start `python app.py` with MODEL_PATH and XRAY_FEEDBACK_DIR set, and wait until its page answers."""
    port = free_port()
    environment = {
        **os.environ,
        "MODEL_PATH": str(model_path),
        "XRAY_FEEDBACK_DIR": str(feedback_root),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "GRADIO_TEMP_DIR": str(log.parent / f"gradio-{port}"),  # see conftest.gradio_cache_per_process
        **(env or {}),
    }
    environment.pop("GRADIO_SERVER_PORT", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, str(APP)], cwd=REPO, env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}/", process, Path(feedback_root), log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode} before serving:\n{server.log_tail()}")
        try:
            if httpx.get(server.url, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise TimeoutError(f"app.py did not answer on {server.url} within {timeout:.0f} s:\n{server.log_tail()}")


def stop_server(server: Server, sig: int = signal.SIGTERM) -> int:
    """Send `sig` to the app's process (SIGKILL to simulate a crash) and wait for it to end; returns its exit code."""
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            return server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
    return server.process.wait()


@contextmanager
def running_server(model_path: Path, feedback_root: Path, log: Path,
                   env: dict[str, str] | None = None) -> Iterator[Server]:
    """start_server ... stop_server as a context manager."""
    server = start_server(model_path, feedback_root, log, env)
    try:
        yield server
    finally:
        stop_server(server)
