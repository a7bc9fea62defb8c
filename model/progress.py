"""A progress line for long jobs on the log: items done of the total, rate and time left, every few seconds."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    """Seconds as '42 s', '3 min 05 s' or '1 h 02 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class Progress:
    """Counts `total` items of a job named `what`; logs a line at most every `every_s` seconds and at the end."""

    what: str
    total: int
    unit: str = "images"
    every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    _start: float = field(init=False)
    _last: float = field(init=False)

    def __post_init__(self) -> None:
        self._start = self._last = self.clock()

    def line(self) -> str:
        """'what: done/total units, rate/s, time left'."""
        elapsed = max(self.clock() - self._start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = duration(left) if left != float("inf") else "unknown"
        return f"{self.what}: {self.done}/{self.total} {self.unit}, {rate:.2f}/s, {eta} left"

    def advance(self, count: int = 1) -> None:
        """Count `count` more items done; log when the interval has passed or the job is complete."""
        self.done += count
        now = self.clock()
        if self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            log.info(self.line())
