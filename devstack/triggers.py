"""The host's non-HTTP triggers: queue listeners (host.json's queue semantics, through
`QueueDispatcher`) and timers on their NCRONTAB schedules, each runnable now on demand."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devstack.functions import QueueFunction, TimerFunction
from devstack.functions_host import QueueDispatcher, QueueHostSettings, timer_request
from devstack.ncrontab import Schedule

log = logging.getLogger("devstack.host")
MIN_POLL = 0.1  # the host's first back-off step when a queue is empty


def logged(name: str, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The function, with the host's one 'Executed' line per invocation."""

    def invoke(argument: Any) -> Any:
        started = time.monotonic()
        try:
            result = call(argument)
        except Exception as exc:
            log.error("Executed 'Functions.%s' (Failed, Duration=%.0fms): %s", name, _ms(started), exc)
            raise
        log.info("Executed 'Functions.%s' (Succeeded, Duration=%.0fms)", name, _ms(started))
        return result

    return invoke


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


class QueueListener:
    """Polls one queue like the host: back off while it is empty, up to `maxPollingInterval`."""

    def __init__(self, function: QueueFunction, connection_string: str, settings: QueueHostSettings) -> None:
        for name in (function.queue, f"{function.queue}-poison"):
            with contextlib.suppress(ResourceExistsError):
                QueueClient.from_connection_string(connection_string, name).create_queue()
        self.dispatcher = QueueDispatcher(
            connection_string, function.queue, logged(function.name, function.call), settings
        )
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"queue-{function.queue}", daemon=True)

    def start(self) -> QueueListener:
        self._thread.start()
        return self

    def _run(self) -> None:
        wait = MIN_POLL
        while not self._stop.is_set():
            try:
                started = self.dispatcher.pump()
            except Exception as exc:  # noqa: BLE001 - storage hiccup: log, back off, keep listening
                log.warning("queue %s: %s", self.dispatcher.queue.queue_name, exc)
                started = 0
            wait = MIN_POLL if started else min(wait * 2, max(self.settings.max_polling_interval, MIN_POLL))
            self._stop.wait(MIN_POLL if started or self.dispatcher.busy() else wait)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.dispatcher.close()


class Timers:
    """Fires each timer at its schedule's next occurrence; one run of a timer at a time."""

    def __init__(
        self, timers: list[TimerFunction], now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.timers = {t.name.lower(): t for t in timers}
        self.schedules = {t.name.lower(): Schedule.parse(t.schedule) for t in timers}
        self.now = now
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(timers)), thread_name_prefix="timer")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)

    def start(self) -> Timers:
        for name, timer in self.timers.items():
            if timer.run_on_startup:
                self.fire(name)
        self._thread.start()
        return self

    def next_runs(self) -> dict[str, datetime]:
        moment = self.now()
        return {name: schedule.next_after(moment) for name, schedule in self.schedules.items()}

    def fire(self, name: str, *, past_due: bool = False) -> bool:
        """Run timer `name` now in the background; False when there is no such timer."""
        timer = self.timers.get(name.lower())
        if timer is None:
            return False
        with self._lock:
            if timer.name in self._running:  # the host's singleton lock: skip, not queue
                log.info("timer %s is still running; this occurrence is skipped", timer.name)
                return True
            self._running.add(timer.name)
        self._pool.submit(self._invoke, timer, past_due)
        return True

    def _invoke(self, timer: TimerFunction, past_due: bool) -> None:
        try:
            logged(timer.name, timer.call)(timer_request(past_due))
        except Exception:  # noqa: BLE001, S110 - logged by `logged`; a timer's failure waits for its next occurrence
            pass
        finally:
            with self._lock:
                self._running.discard(timer.name)

    def _run(self) -> None:
        upcoming = self.next_runs()
        while not self._stop.is_set():
            name, due = min(upcoming.items(), key=lambda item: item[1]) if upcoming else ("", None)
            if due is None:
                self._stop.wait()
                return
            if self._stop.wait(max(0.0, (due - self.now()).total_seconds())):
                return
            self.fire(name)
            upcoming[name] = self.schedules[name].next_after(due)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # never started: an instance that only runs timers on demand
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True)
