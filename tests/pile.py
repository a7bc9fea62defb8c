"""One client's pile of predictions, sent from a process of its own (as a second user's machine would send them).

`python -m tests.pile URL FOLDER FORWARDED` predicts every PNG in FOLDER at once through gradio_client, with
X-Forwarded-For: FORWARDED, and prints `done <monotonic time>` as each answer arrives, then `errors <n>` and the first distinct errors.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

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


if __name__ == "__main__":
    main(*sys.argv[1:4])
