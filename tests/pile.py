"""One client's pile of predictions, sent from a process of its own (as a second user's machine would send them).

`python -m tests.pile URL FOLDER FORWARDED` predicts every PNG in FOLDER at once through gradio_client, with
X-Forwarded-For: FORWARDED, and prints `done <monotonic time>` as each answer arrives, then `errors <n>` and the
first distinct errors. `race` sends such a pile and, once some are answered, another client's prediction.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gradio_client import Client, handle_file


def main(url: str, folder: str, forwarded: str) -> None:
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False,
                    headers={"X-Forwarded-For": forwarded}, max_workers=64)
    errors = []
    printing = threading.Lock()

    def send(path: Path) -> None:
        try:
            client.predict(handle_file(str(path)), api_name="/predict")
        except Exception as error:
            errors.append(error)
            return
        with printing:
            print("done", time.monotonic(), flush=True)

    threads = [threading.Thread(target=send, args=(path,)) for path in sorted(Path(folder).glob("*.png"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("errors", len(errors), *sorted({f"{type(e).__name__}: {e}" for e in errors})[:3], flush=True)


@dataclass
class Race:
    """How the other client's prediction fared against the pile: the pile's answers after it was sent (their
    monotonic times), when it was answered, and the pile's `errors` line."""

    finished: list[float]
    lone_done: float
    errors: str

    @property
    def overtaken_by(self) -> int:
        """How many of the pile's waiting predictions were answered before it."""
        return sum(1 for t in self.finished if t < self.lone_done)


def race(url: str, folder: Path, first: int, send_lone: Callable[[], object]) -> Race:
    """Send the pile in FOLDER from its own process (client 203.0.113.10); once `first` are answered, send_lone()."""
    repo = Path(__file__).resolve().parent.parent
    pile = subprocess.Popen([sys.executable, "-m", "tests.pile", url, str(folder), "203.0.113.10"],
                            cwd=repo, stdout=subprocess.PIPE, text=True)
    answered = [pile.stdout.readline() for _ in range(first)]
    if not all(line.startswith("done") for line in answered):
        raise RuntimeError(f"the pile did not answer {first} predictions: {answered}")
    send_lone()
    lone_done = time.monotonic()
    rest = pile.stdout.read().split("\n")
    pile.wait(60)
    errors = next((line for line in rest if line.startswith("errors")), "errors ?")
    return Race([float(line.split()[1]) for line in rest if line.startswith("done")], lone_done, errors)


if __name__ == "__main__":
    main(*sys.argv[1:4])
