"""Memory for decoding images at once: decodes reserve their expected peak, and wait in turn while it is spent."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import settings

PEAK_FACTOR = 7
"""Peak memory of a decode per byte of its decoded pixel data (measured: a deflated 16-bit 6300 px DICOM, 76 MiB of
pixels, peaks 530 MiB above where decoding started: the inflated data, the pixels, float32 copies, percentiles)."""
M_ARENA_MAX = -8
"""glibc's mallopt parameter number for the most arenas."""
TRIM_AFTER_BYTES = 64 * 2**20
"""The heap is trimmed after a decode reserving this much, and when the budget drains to nothing after decodes that
reserved this much together since the last trim (a flood of mid-sized uploads, none large alone)."""


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def release_freed_memory() -> None:
    """Hand memory freed inside the C heap's arenas back to the system (glibc's malloc_trim; elsewhere nothing).

    Without it, the arenas of the threads that decoded large images keep their freed pages, and the app's resting
    memory grows with every burst of large uploads.
    """
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


def limit_heap_arenas(arenas: int) -> bool:
    """Keep the C heap to `arenas` arenas from now on (glibc's mallopt; elsewhere nothing): whether it took. Called
    at a server's start, before its threads allocate ($XRAY_HEAP_ARENAS, default 2).

    glibc makes up to 8 arenas per core, one per thread that allocates while the others are busy. Memory a flood's
    worker threads freed stays scattered over them, where a trim cannot return the pages that still hold a live chunk:
    after 200 concurrent 6-megapixel predictions, resting memory stayed 292 MiB above the warmed instance with glibc's
    default and 101-115 MiB with two arenas, in the same time (benchmarks/bench_memory.py --flood)."""
    try:
        return bool(_libc().mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


@dataclass
class DecodeBudget:
    """At most `budget_bytes` of expected decoding peaks at once, first come first served; a decode larger than the
    whole budget runs alone. Small images (a 2000 px 8-bit PNG reserves 27 MiB) rarely wait; large ones take turns.
    `release` hands freed heap back to the system (see TRIM_AFTER_BYTES for when)."""

    budget_bytes: int
    release: Callable[[], None] = release_freed_memory
    _in_use: int = 0
    _since_trim: int = 0
    _queue: deque = field(default_factory=deque, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def in_use(self) -> int:
        """Bytes reserved by the decodes running now."""
        with self._changed:
            return self._in_use

    @contextmanager
    def reserve(self, decoded_bytes: int) -> Iterator[None]:
        """Run the block once PEAK_FACTOR x decoded_bytes fit in the budget and every earlier caller has started."""
        need = min(self.budget_bytes, max(0, decoded_bytes) * PEAK_FACTOR)
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            self._changed.wait_for(lambda: self._queue[0] is ticket and self._in_use + need <= self.budget_bytes)
            self._queue.popleft()
            self._in_use += need
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= need
                self._since_trim += need
                trim = need >= TRIM_AFTER_BYTES or (self._in_use == 0 and self._since_trim >= TRIM_AFTER_BYTES)
                if trim:
                    self._since_trim = 0
                self._changed.notify_all()
            if trim:
                self.release()


@functools.cache
def decodes() -> DecodeBudget:
    """The process's one budget, of XRAY_DECODE_MEMORY_MB (read at the first decode): every read_grey and
    lossless_png of model.images decodes within it."""
    return DecodeBudget(settings.decode_memory_bytes())
