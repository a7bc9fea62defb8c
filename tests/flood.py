"""One client's flood of requests kept outstanding, sent from a process of its own (as a hostile user's machine would).

`python -m tests.flood URL API FORWARDED N FILE [ARG...]` uploads FILE once, then keeps N requests to the endpoint
outstanding through Gradio's /call API (FILE first, then the ARGs as its other inputs), all with X-Forwarded-For:
FORWARDED: each is sent again as soon as it is answered, or REFUSED_PAUSE_S after it is refused, until the standard
input closes. It prints `wave <admitted> <refused>` once the first N have been answered at the queue's door, `done
<monotonic time>` as each answer arrives, and at the end `refused <n> <json of each distinct [status, reason]>` and
`errors <n>` with the first distinct other failures (an error answer, a broken connection). `flooding` runs one
while the caller does its own requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REFUSED_PAUSE_S = 0.25


def file_data(uploaded: str, name: str) -> dict:
    return {"path": uploaded, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def upload(http: httpx.Client, path: Path) -> dict:
    """Upload one file; its FileData for an endpoint's input."""
    response = http.post("gradio_api/upload", files={"files": (path.name, path.read_bytes())})
    response.raise_for_status()
    return file_data(response.json()[0], path.name)


def answer(http: httpx.Client, api: str, data: list) -> str:
    """Send one request through /call and wait for its answer: "complete" or "error"; HTTPStatusError if refused."""
    response = http.post(f"gradio_api/call/{api}", json={"data": data})
    response.raise_for_status()
    stream = http.get(f"gradio_api/call/{api}/{response.json()['event_id']}").text
    return next((line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: ")
                 and line != "event: heartbeat"), "no answer")


async def flood(url: str, api: str, forwarded: str, n: int, path: Path, args: list, stop: asyncio.Event) -> None:
    headers = {"X-Forwarded-For": forwarded}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        data = [upload(http, path), *args]
    refused, errors, wave = Counter(), [], Counter()
    # A new connection per request: one kept alive can be closed by the server just as it is reused (ReadError).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:

        async def keep_one() -> None:
            first = True
            while not stop.is_set():
                pause = 0.0
                try:
                    response = await http.post(f"gradio_api/call/{api}", json={"data": data})
                    if first:
                        wave["admitted" if response.status_code == 200 else "refused"] += 1
                        if sum(wave.values()) == n:
                            print("wave", wave["admitted"], wave["refused"], flush=True)
                    first = False
                    if response.status_code != 200:
                        refused[json.dumps([response.status_code, response.json().get("detail")])] += 1
                        pause = REFUSED_PAUSE_S
                    else:
                        stream = (await http.get(f"gradio_api/call/{api}/{response.json()['event_id']}")).text
                        if "event: complete" in stream:
                            print("done", time.monotonic(), flush=True)
                        else:
                            errors.append(f"answer: {stream[:200]}")
                except (httpx.HTTPError, ValueError) as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    pause = REFUSED_PAUSE_S
                if pause:
                    try:
                        await asyncio.wait_for(stop.wait(), pause)
                    except asyncio.TimeoutError:
                        pass

        await asyncio.gather(*(keep_one() for _ in range(n)))
    print("refused", sum(refused.values()), json.dumps([json.loads(r) for r in sorted(refused)]), flush=True)
    print("errors", len(errors), *sorted(set(errors))[:3], flush=True)


def main(url: str, api: str, forwarded: str, n: str, path: str, *args: str) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
        await flood(url, api, forwarded, int(n), Path(path), list(args), stop)

    asyncio.run(run())


@dataclass
class Flood:
    """What the flood saw: its first wave at the door (admitted, refused), each answer's monotonic time, its
    refusals with their distinct [status, reason], and its `errors` line."""

    wave: tuple[int, int]
    done: list[float]
    refused: int
    reasons: list[list]
    errors: str

    def answered_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.done if start < t < end)


@contextmanager
def flooding(url: str, api: str, n: int, path: Path, *args: str, forwarded: str = "203.0.113.10",
             nice: int = 0) -> Iterator[Callable[[], Flood]]:
    """Run the flood from its own process (at niceness `nice`: above 0, it takes only the CPU the server leaves, as a
    flooder on a machine of its own would); yields once its first wave is answered at the door; after the block, the
    flood is stopped and the yielded function gives what it saw."""
    repo = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-m", "tests.flood", url, api, forwarded, str(n), str(path), *args],
                               cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               preexec_fn=(lambda: os.nice(nice)) if nice else None)
    lines = []
    try:
        while not (line := process.stdout.readline()).startswith("wave"):
            if not line:
                raise RuntimeError(f"the flood ended before its first wave: {lines[-5:]}")
            lines.append(line)
        wave = tuple(int(x) for x in line.split()[1:3])
        seen: list[Flood] = []
        yield lambda: seen[0]
    finally:
        process.stdin.close()
        rest = process.stdout.read().splitlines()
        process.wait(120)
    lines += rest
    refused = next(line for line in lines if line.startswith("refused")).split(" ", 2)
    seen.append(Flood(wave, [float(x.split()[1]) for x in lines if x.startswith("done")], int(refused[1]),
                      json.loads(refused[2]), next(x for x in lines if x.startswith("errors"))))


if __name__ == "__main__":
    main(*sys.argv[1:])
