"""The libcurl handles the curl transport (curl.py) sends on: one process-wide pool. A handle keeps
its own connections (and TLS sessions), so they outlive the lane threads that borrow it; LIFO, so
a burst's extra handles idle at the bottom and the busy ones stay warm. A handle serves one thread
at a time (libcurl's rule); pycurl lets the GIL go while it waits on the network."""

from __future__ import annotations

import threading
from typing import Any

import pycurl

from rotation.azure.curlanswer import Gathered
from rotation.config import MAX_PARALLEL_TARGETS


class Handle:
    """A libcurl handle with what it carries from one request to the next: its callbacks' state
    (`gathered`, bound to the handle once) and `settled`, the key of the options every request of
    the same route sets alike (curlrequest.prepare); None: reset it before the next request."""

    __slots__ = ("curl", "gathered", "settled")

    def __init__(self) -> None:
        self.curl = pycurl.Curl()
        self.gathered = Gathered(None)
        self.settled: tuple[Any, ...] | None = None

    def close(self) -> None:
        self.curl.close()


class Handles:
    """Up to `kept` idle handles; a burst past it makes handles that are closed when handed back."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._idle: list[Handle] = []
        self._lock = threading.Lock()

    def take(self) -> Handle:
        """A handle no other thread uses, with its previous request's options (curlrequest.prepare
        resets it unless they are what the next request sets anyway); its connections stay.
        Hand it back with `give`, or close it."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Handle()

    def give(self, handle: Handle) -> None:
        with self._lock:
            if len(self._idle) < self.kept:
                self._idle.append(handle)
                return
        handle.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.close()


# As many as the urllib3 pools keep (clients.py): a connection for every lane thread and then some.
SHARED = Handles(MAX_PARALLEL_TARGETS + 8)
