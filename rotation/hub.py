"""A run's targets as greenlets on one thread that drives every transfer (`ROTATION_EXECUTION=hub`).

With a thread per target, 256 targets in flight are 256 threads taking turns under the GIL, and
each call costs about 1.6 ms of CPU where the same call from one thread costs 1.1 ms
(bench/thread_model.py, bench/hub_model.py; docs/performance.md, "Issue 27 at stop 26"). Here one
thread runs every target as a greenlet: a target runs its ordinary code (the kinds, the ARM
pipeline, the pollers, unchanged) until it would block, on a transfer (`transfer`, from the
libcurl transport) or a wait (`sleep`, from rotation/waits.py, which also says which hub runs
the calling code); it is switched out there, and switched back in when its transfer ended
(libcurl's multi interface) or its time came.

Only those two places switch. A target that blocks anywhere else (a lock another target holds
across a switch, a future of another thread's work) stops the whole hub until it returns: the
code on a target's path takes no lock across a transfer or a wait, and what other threads do
for it (the audit flush, the step rows) does not wait on the hub.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import greenlet
import pycurl

from rotation import waits
from rotation.config import MAX_PARALLEL_TARGETS


class Hub(Executor):
    """An executor whose work runs as greenlets on its own thread (started by the first submit).

    The thread waits in one `select` (epoll) on what libcurl asks it to watch (its socket
    callback), a socket other threads write a byte to when they hand it work, and the nearest
    of libcurl's timeout and the targets' waits: it wakes only when something happened, and
    then pays for what happened, not for every transfer in flight (`socket_action`)."""

    def __init__(self, name: str = "hub", connections: int = MAX_PARALLEL_TARGETS) -> None:
        self.name = name
        # libcurl queues a transfer past this many open connections until one is free: many
        # more targets wait on the hub than talk at once (config.MAX_PARALLEL_TARGETS_ON_HUB).
        self.connections = connections
        self.main: greenlet.greenlet | None = None  # the hub thread's own greenlet
        self._inbox: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._ready: deque[tuple[greenlet.greenlet, Any]] = deque()
        self._transfers: dict[pycurl.Curl, greenlet.greenlet] = {}
        self._timers: list[tuple[float, int, greenlet.greenlet]] = []
        self._order = itertools.count()
        self._running = 0  # targets started and not ended
        self._closing = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._multi: pycurl.CurlMulti | None = None
        self._selector: selectors.BaseSelector | None = None
        self._curl_due: float | None = None  # when libcurl wants socket_action(SOCKET_TIMEOUT)

    # -- the executor, from any thread --------------------------------------------------------
    def submit[**P, T](self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._inbox.put((lambda: fn(*args, **kwargs), future))
            if self._thread is None:
                # Not a daemon: as a thread pool's workers, work under way when the interpreter
                # exits ends first (a write a stopped run left in flight still gets its answer).
                self._thread = threading.Thread(target=self._loop, name=self.name)
                self._thread.start()
        self._wake()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closing = True
            thread = self._thread
        if cancel_futures:
            while True:
                try:
                    _, future = self._inbox.get_nowait()
                except queue.Empty:
                    break
                future.cancel()
        self._wake()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()
        if thread is None:
            self._close_wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (it wakes anyway) or closed (it ended)
            self._wake_write.send(b"\0")

    def _close_wake(self) -> None:
        self._wake_read.close()
        self._wake_write.close()

    # -- from a target (a greenlet of this hub) -----------------------------------------------
    def transfer(self, curl: pycurl.Curl) -> pycurl.error | None:
        """The transfer on a prepared libcurl handle, the target switched out until it ended;
        its error, or None."""
        assert self._multi is not None
        assert self.main is not None
        self._transfers[curl] = greenlet.getcurrent()
        self._multi.add_handle(curl)  # libcurl asks for a timeout at once: the loop starts it
        error: pycurl.error | None = self.main.switch()
        return error

    def sleep(self, seconds: float) -> None:
        assert self.main is not None
        target = greenlet.getcurrent()
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, seconds), next(self._order), target))
        self.main.switch()

    # -- the hub's thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        self.main = greenlet.getcurrent()
        waits.serving(self)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, self.connections)
        try:
            while True:
                self._take_inbox()
                self._wake_timers()
                while self._ready:
                    target, value = self._ready.popleft()
                    target.switch(value)
                if self._running == 0:
                    with self._lock:
                        # Idle, and closed or the interpreter is exiting (a hub never shut down
                        # must not keep the process alive with nothing to do).
                        closed = self._closing or not threading.main_thread().is_alive()
                        if closed and self._inbox.empty():
                            return
                self._wait()
        finally:
            self._multi.close()
            self._selector.close()
            self._close_wake()
            waits.serving(None)

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        """libcurl: watch `fd` for `what` (or no longer)."""
        selector = self._selector
        assert selector is not None
        events = (selectors.EVENT_READ if what in (pycurl.POLL_IN, pycurl.POLL_INOUT) else 0) | (
            selectors.EVENT_WRITE if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT) else 0
        )
        registered = fd in selector.get_map()
        if what == pycurl.POLL_REMOVE or not events:
            if registered:
                selector.unregister(fd)
        elif registered:
            selector.modify(fd, events, fd)
        else:
            selector.register(fd, events, fd)

    def _on_timer(self, timeout_ms: int) -> None:
        """libcurl: call socket_action(SOCKET_TIMEOUT) in `timeout_ms` (-1: no timer)."""
        self._curl_due = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000

    def _take_inbox(self) -> None:
        while True:
            try:
                self._start(*self._inbox.get_nowait())
            except queue.Empty:
                return

    def _start(self, work: Callable[[], Any], future: Future[Any]) -> None:
        if future.set_running_or_notify_cancel():
            self._running += 1
            self._ready.append((greenlet.greenlet(self._target(work, future)), None))

    def _target(self, work: Callable[[], Any], future: Future[Any]) -> Callable[..., None]:
        def run(*_: Any) -> None:
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - the future carries it to the caller
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                self._running -= 1

        return run

    def _wake_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            self._ready.append((heapq.heappop(self._timers)[2], None))

    def _wait(self) -> None:
        """Until a socket libcurl watches is ready, another thread handed work, libcurl's timer
        or a target's wait is due; then what libcurl has to do, and the transfers that ended."""
        multi, selector = self._multi, self._selector
        assert multi is not None
        assert selector is not None
        due = min(
            (t for t in (self._curl_due, self._timers[0][0] if self._timers else None) if t is not None),
            default=None,
        )
        timeout = None if due is None else max(0.0, due - time.monotonic())
        if self._running == 0 and timeout is None:
            timeout = 0.1  # idle: look at the close again
        for key, mask in selector.select(timeout):
            if key.data is None:  # the wake-up socket
                with contextlib.suppress(BlockingIOError):
                    while self._wake_read.recv(4096):
                        pass
                continue
            action = (pycurl.CSELECT_IN if mask & selectors.EVENT_READ else 0) | (
                pycurl.CSELECT_OUT if mask & selectors.EVENT_WRITE else 0
            )
            multi.socket_action(key.data, action)
        if self._curl_due is not None and self._curl_due <= time.monotonic():
            self._curl_due = None
            multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._ended()

    def _ended(self) -> None:
        multi = self._multi
        assert multi is not None
        while True:
            queued, ended, failed = multi.info_read()
            for curl in ended:
                multi.remove_handle(curl)
                self._ready.append((self._transfers.pop(curl), None))
            for curl, code, message in failed:
                multi.remove_handle(curl)
                self._ready.append((self._transfers.pop(curl), pycurl.error(code, message)))
            if not queued:
                return
