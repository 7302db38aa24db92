"""A small stand-in for the Azure Functions host, for tests and the demo.

Trigger inputs are built the way the host builds them: from raw JSON through the
azure-functions library's own input converters (an Event Grid delivery in CloudEvents schema
arrives as `func.CloudEvent`; a queue message's `dequeue_count` comes from trigger metadata).
`QueueDispatcher` reads an Azurite queue with the host's semantics from host.json
(`messageEncoding`, `maxDequeueCount`, `visibilityTimeout`, `batchSize`, `newBatchThreshold`):
messages run concurrently, a failure makes the message visible again after the visibility
timeout, and past `maxDequeueCount` it moves to `<queue>-poison`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.http import HttpRequestConverter
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter
from azure.storage.queue import QueueClient

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")

log = logging.getLogger("devstack.host")


def _seconds(timespan: str) -> float:
    match = _TIMESPAN.match(timespan)
    if not match:
        raise ValueError(f"not a TimeSpan: {timespan!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


# -- Event Grid ----------------------------------------------------------------------------------
def event_grid_events(body: str | bytes | list[Any] | dict[str, Any]) -> list[Any]:
    """The trigger arguments for one delivery: the host invokes the function once per event."""
    payload = json.loads(body) if isinstance(body, str | bytes) else body
    items = payload if isinstance(payload, list) else [payload]
    return [
        EventGridEventInConverter.decode(meta.Datum(json.dumps(item), "json"), trigger_metadata={})
        for item in items
    ]


def deliver_event_grid(
    function: Callable[[Any], Any], body: str | bytes | list[Any] | dict[str, Any]
) -> list[Exception | None]:
    """Deliver to an Event Grid triggered function; an exception means Event Grid would retry."""
    outcomes: list[Exception | None] = []
    for event in event_grid_events(body):
        try:
            function(event)
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - recorded, as the host records a failed invocation
            outcomes.append(exc)
    return outcomes


# -- HTTP ----------------------------------------------------------------------------------------
def http_request(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    base_url: str = "http://localhost:7071",
) -> Any:
    """A func.HttpRequest built through the library's converter from what the host sends."""
    url = base_url + path + (("?" + urlencode(query)) if query else "")
    raw = body if body is not None else b""
    value = {
        "method": meta.Datum(method.upper(), "string"),
        "url": meta.Datum(url, "string"),
        "headers": {k: meta.Datum(v, "string") for k, v in (headers or {}).items()},
        "query": {k: meta.Datum(v, "string") for k, v in (query or {}).items()},
        "params": {k: meta.Datum(v, "string") for k, v in (route_params or {}).items()},
        "body": meta.Datum(raw, "bytes" if isinstance(raw, bytes) else "string"),
    }
    return HttpRequestConverter.decode(meta.Datum(value, "http"), trigger_metadata={})


def timer_request(past_due: bool = False) -> Any:
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": {}, "IsPastDue": past_due}
    return TimerRequestConverter.decode(meta.Datum(json.dumps(info), "json"), trigger_metadata={})


# -- queues --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueHostSettings:
    message_encoding: str = "base64"
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0

    @classmethod
    def from_host_json(cls, path: Path) -> QueueHostSettings:
        queues = json.loads(Path(path).read_text()).get("extensions", {}).get("queues", {})
        batch = int(queues.get("batchSize", 16))
        return cls(
            message_encoding=str(queues.get("messageEncoding", "base64")).lower(),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=_seconds(queues.get("visibilityTimeout", "00:00:00")),
            batch_size=batch,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
            max_polling_interval=_seconds(queues.get("maxPollingInterval", "00:01:00")),
        )


@dataclass
class Invocation:
    message_id: str
    dequeue_count: int
    error: Exception | None
    poisoned: bool = False


@dataclass
class DispatchStats:
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def failures(self) -> list[Invocation]:
        return [i for i in self.invocations if i.error is not None]

    @property
    def poisoned(self) -> list[Invocation]:
        return [i for i in self.invocations if i.poisoned]


class QueueDispatcher:
    """Pulls messages from an Azurite queue and runs the queue-triggered function on them."""

    def __init__(
        self,
        connection_string: str,
        queue_name: str,
        function: Callable[[Any], Any],
        settings: QueueHostSettings,
        *,
        processing_timeout: int = 600,
    ) -> None:
        self.queue = QueueClient.from_connection_string(connection_string, queue_name)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue_name}-poison")
        self.function = function
        self.settings = settings
        self.processing_timeout = processing_timeout
        self.stats = DispatchStats()
        self._pool = ThreadPoolExecutor(
            max_workers=settings.batch_size + settings.new_batch_threshold, thread_name_prefix="queue-host"
        )
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _decode(self, content: str) -> bytes:
        if self.settings.message_encoding == "base64":
            return base64.b64decode(content.encode(), validate=True)
        return content.encode()

    def _invoke(self, message: Any) -> None:
        error: Exception | None = None
        try:
            body = self._decode(message.content)
        except (binascii.Error, ValueError) as exc:
            error = ValueError(f"message is not valid base64: {exc}")
        else:
            metadata = {
                "Id": meta.Datum(message.id, "string"),
                "DequeueCount": meta.Datum(str(message.dequeue_count), "json"),
                "PopReceipt": meta.Datum(message.pop_receipt, "string"),
                "InsertionTime": meta.Datum(message.inserted_on.isoformat(), "string"),
                "ExpirationTime": meta.Datum(message.expires_on.isoformat(), "string"),
                "NextVisibleTime": meta.Datum(message.next_visible_on.isoformat(), "string"),
            }
            argument = QueueMessageInConverter.decode(meta.Datum(body, "bytes"), trigger_metadata=metadata)
            try:
                self.function(argument)
            except Exception as exc:  # noqa: BLE001 - a failed invocation; the message is retried or poisoned
                error = exc
        poisoned = False
        if error is None:
            self.queue.delete_message(message.id, message.pop_receipt)
        elif message.dequeue_count >= self.settings.max_dequeue_count:
            # the Functions host's own line: the moment the poison alert is about; said before
            # the move, so whoever sees the message in the poison queue finds the line written
            log.warning(
                "Message %s has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                message.id,
                self.settings.max_dequeue_count,
                self.poison.queue_name,
            )
            self.poison.send_message(message.content)
            self.queue.delete_message(message.id, message.pop_receipt)
            poisoned = True
        else:
            self.queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=int(self.settings.visibility_timeout)
            )
        with self._lock:
            self.stats.invocations.append(Invocation(message.id, message.dequeue_count, error, poisoned))

    def pump(self) -> int:
        """Fetch a batch when few enough messages are in flight; returns how many were started."""
        with self._lock:
            self._in_flight = {f for f in self._in_flight if not f.done()}
            if len(self._in_flight) > self.settings.new_batch_threshold:
                return 0
        messages = list(
            self.queue.receive_messages(
                max_messages=self.settings.batch_size, visibility_timeout=self.processing_timeout
            )
        )
        for message in messages:
            future = self._pool.submit(self._invoke, message)
            with self._lock:
                self._in_flight.add(future)
        return len(messages)

    def busy(self) -> bool:
        with self._lock:
            return any(not f.done() for f in self._in_flight)

    def run_until_idle(self, timeout: float = 120, poll: float = 0.05) -> DispatchStats:
        """Dispatch until the queue holds no message (visible or not) and nothing runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.pump()
            if started == 0 and not self.busy():
                if self.queue.get_queue_properties().approximate_message_count == 0 and not self.busy():
                    for future in list(self._in_flight):
                        future.result()
                    return self.stats
                time.sleep(poll)
            elif started == 0:
                time.sleep(poll)
        raise TimeoutError(f"queue {self.queue.queue_name} not idle after {timeout}s")
