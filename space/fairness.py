"""A fair share of the predict slots per client: one client's pile of requests does not hold up everyone else."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class FairShare:
    """At most `slots` calls run at once; a freed slot goes to the waiting call whose client has the fewest calls
    running, then whose client started one longest ago (round robin), then the longest-waiting. A client with 60
    predictions waiting therefore cannot take every free slot while another client waits."""

    slots: int
    _running: Counter = field(default_factory=Counter, repr=False)
    _waiting: dict[int, str | None] = field(default_factory=dict, repr=False)
    _last_start: dict[str | None, int] = field(default_factory=dict, repr=False)
    _numbers: Iterator[int] = field(default_factory=itertools.count, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def _next(self) -> int:
        """The waiting call to run next."""
        def rank(number: int) -> tuple[int, int, int]:
            client = self._waiting[number]
            return self._running[client], self._last_start.get(client, -1), number

        return min(self._waiting, key=rank)

    def resize(self, slots: int) -> None:
        """Share `slots` from now on (a newly loaded model may batch differently)."""
        with self._changed:
            self.slots = slots
            self._changed.notify_all()

    def waiting(self, client: str | None = None) -> int:
        """Calls waiting now (of one client, or of all when client is None)."""
        with self._changed:
            return sum(1 for c in self._waiting.values() if client is None or c == client)

    @contextmanager
    def turn(self, client: str | None) -> Iterator[None]:
        """Run the block when this client's turn comes."""
        with self._changed:
            number = next(self._numbers)
            self._waiting[number] = client
            self._changed.wait_for(lambda: sum(self._running.values()) < max(1, self.slots) and self._next() == number)
            del self._waiting[number]
            self._running[client] += 1
            self._last_start.pop(client, None)
            self._last_start[client] = number
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._running[client] -= 1
                if not self._running[client]:
                    del self._running[client]
                    if not any(c == client for c in self._waiting.values()):
                        self._last_start.pop(client, None)
                self._changed.notify_all()
