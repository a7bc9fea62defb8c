"""The one thread on which a server runs its network passes, whichever request thread asks.

TensorFlow and oneDNN keep native state per thread that runs a network (primitives, scratch buffers), for every
network loaded: with passes run by whichever of Gradio's worker threads led a batch, hot reloads kept memory
(measured: the same 16 passes per reload grew 1,246 -> 1,466 MiB over 8 reloads from a pool of 16 threads, and
stayed at 1,114 MiB from one thread). One thread holds that state once, and a pass timed here
(model/serving/measure.py) never runs beside a serving pass.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

_here = threading.local()


def _mark() -> None:
    _here.network = True


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="network", initializer=_mark)


def on_network_thread(function: Callable[..., T], *args) -> T:
    """function(*args) run on the network thread (directly when already on it): its result, or its exception."""
    if getattr(_here, "network", False):
        return function(*args)
    return _executor().submit(function, *args).result()
