"""Event Grid delivery from a vault's system topic to an event subscription's endpoint, the way
Event Grid does it (learn.microsoft.com/azure/event-grid/delivery-and-retry):

- the subscription's `includedEventTypes` filter, and its delivery schema (Event Grid schema:
  a JSON array of one event; CloudEvents 1.0: one event, `application/cloudevents+json`);
- one event per delivery; 200-204 is success;
- 400, 413, 401 and 403 from a webhook are not retried: the event is dead-lettered at once;
- anything else (other statuses, no answer within 30 s, a refused connection) is retried after
  10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h, until
  `maxDeliveryAttempts` or `eventTimeToLiveInMinutes` runs out, whichever comes first;
- then a dead-letter blob `<container>/<SUBSCRIPTION-NAME-UPPER>/yyyy/m/d/h/<guid>.json`
  (UTC, not zero-padded) holding a JSON array of the event with `deadLetterReason`,
  `deliveryAttempts`, `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime` and
  `lastDeliveryAttemptTime` added.

`time_scale` compresses the whole schedule and the time to live (0.001: 10 s becomes 10 ms), so a
drill takes seconds; 1 is Event Grid's real pace.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .faults import CallLog, FaultBook
from .keyevents import event_time

log = logging.getLogger("emulator.eventgrid")
RETRY_SCHEDULE = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
RETRY_AFTER_SCHEDULE = 43200  # every 12 hours once the schedule is spent
NOT_RETRIED = {400, 401, 403, 413}
RESPONSE_TIMEOUT = 30.0
DELIVERY_HOST = "eventgrid-delivery"  # the host name faults and the call log use for deliveries
_SCHEMAS = {"EventGridSchema", "CloudEventSchemaV1_0"}
_OUTCOMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 408: "TimedOut"}


def retry_delay(attempts_made: int) -> int:
    """Seconds before the next attempt, after `attempts_made` failed ones."""
    index = attempts_made - 1
    return RETRY_SCHEDULE[index] if index < len(RETRY_SCHEDULE) else RETRY_AFTER_SCHEDULE


def outcome_name(status: int) -> str:
    if status == 0:
        return "Aborted"
    if status in (429, 503):
        return "Busy"
    return _OUTCOMES.get(status, "GenericError" if status < 500 else "Aborted")


def dead_letter_path(subscription: str, moment: float) -> str:
    when = datetime.fromtimestamp(moment, UTC)
    return f"{subscription.upper()}/{when.year}/{when.month}/{when.day}/{when.hour}/{uuid.uuid4()}.json"


def to_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "subject": event["subject"],
        "type": event["eventType"],
        "time": event["eventTime"],
        "data": event["data"],
    }


@dataclass(frozen=True)
class Subscription:
    name: str
    topic: str  # the vault name whose system topic this subscribes to (lower case)
    endpoint: str
    included_event_types: tuple[str, ...]
    schema: str
    max_attempts: int
    ttl_minutes: int
    dead_letter: Callable[[str, bytes], None] | None  # (blob path, content)

    def wants(self, event: dict[str, Any]) -> bool:
        return not self.included_event_types or event["eventType"] in self.included_event_types

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "topic": self.topic,
            "endpoint": _redact(self.endpoint),
            "includedEventTypes": list(self.included_event_types),
            "eventDeliverySchema": self.schema,
            "maxDeliveryAttempts": self.max_attempts,
            "eventTimeToLiveInMinutes": self.ttl_minutes,
            "deadLetter": self.dead_letter is not None,
        }


def _redact(url: str) -> str:
    """The endpoint without its query (which carries the function's key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass(order=True)
class Pending:
    due: float
    seq: int
    subscription: Subscription = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    published: float = field(compare=False)
    attempts: int = field(compare=False, default=0)
    last_status: int = field(compare=False, default=0)
    last_attempt: float = field(compare=False, default=0.0)


def subscription_from_spec(
    spec: dict[str, Any], dead_letter: Callable[[str, bytes], None] | None
) -> Subscription:
    """Validate an admin `POST /eventgrid/subscriptions` body (ARM's property names)."""
    known = {
        "name",
        "topic",
        "endpoint",
        "includedEventTypes",
        "eventDeliverySchema",
        "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes",
        "deadLetterConnectionString",
        "deadLetterContainer",
    }
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown subscription fields {sorted(unknown)}; known: {sorted(known)}")
    for name in ("name", "topic", "endpoint"):
        if not isinstance(spec.get(name), str) or not spec[name]:
            raise ValueError(f"{name}: a non-empty string is required")
    if urlsplit(spec["endpoint"]).scheme not in ("http", "https"):
        raise ValueError("endpoint: an http(s) URL")
    schema = spec.get("eventDeliverySchema", "EventGridSchema")
    if schema not in _SCHEMAS:
        raise ValueError(f"eventDeliverySchema: one of {sorted(_SCHEMAS)}")
    attempts, ttl = spec.get("maxDeliveryAttempts", 30), spec.get("eventTimeToLiveInMinutes", 1440)
    if not isinstance(attempts, int) or not 1 <= attempts <= 30:
        raise ValueError("maxDeliveryAttempts: an integer from 1 to 30")
    if not isinstance(ttl, int) or not 1 <= ttl <= 1440:
        raise ValueError("eventTimeToLiveInMinutes: an integer from 1 to 1440")
    types = spec.get("includedEventTypes") or []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ValueError("includedEventTypes: a list of event type names")
    return Subscription(
        spec["name"],
        spec["topic"].lower(),
        spec["endpoint"],
        tuple(types),
        schema,
        attempts,
        ttl,
        dead_letter,
    )


class EventGridDelivery:
    """System topics' subscriptions and a worker thread that delivers, retries and dead-letters."""

    def __init__(self, faults: FaultBook, calls: CallLog, time_scale: Callable[[], float]) -> None:
        self.faults = faults
        self.calls = calls
        self.time_scale = time_scale
        # keyed by (system topic, name), as Azure keeps them: one name may recur on every vault
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._queue: list[Pending] = []
        self._seq = itertools.count()
        self._log: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._busy = False
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread = threading.Thread(target=self._run, name="eventgrid-delivery", daemon=True)
        self._thread.start()

    # -- configuration -----------------------------------------------------------------------
    def subscribe(self, subscription: Subscription) -> None:
        with self._cv:
            self._subscriptions[(subscription.topic, subscription.name.lower())] = subscription

    def unsubscribe_all(self) -> None:
        with self._cv:
            self._subscriptions.clear()
            self._queue.clear()

    def subscriptions(self) -> list[dict[str, Any]]:
        with self._cv:
            return [s.describe() for s in self._subscriptions.values()]

    def log(self) -> list[dict[str, Any]]:
        """Every delivery attempt and dead letter, oldest first."""
        with self._cv:
            return list(self._log)

    def clear_log(self) -> None:
        with self._cv:
            self._log.clear()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        self._thread.join(timeout=5)

    # -- publishing --------------------------------------------------------------------------
    def publish(self, topic: str, event: dict[str, Any]) -> int:
        """Queue `event` for every subscription of `topic` that wants it; returns how many."""
        moment = time.time()
        with self._cv:
            matched = [s for s in self._subscriptions.values() if s.topic == topic.lower() and s.wants(event)]
            for subscription in matched:
                heapq.heappush(self._queue, Pending(moment, next(self._seq), subscription, event, moment))
            self._cv.notify_all()
        return len(matched)

    def idle(self) -> bool:
        with self._cv:
            return not self._queue and not self._busy

    # -- the worker --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._queue or self._queue[0].due > time.time()):
                    wait = self._queue[0].due - time.time() if self._queue else None
                    self._cv.wait(timeout=wait)
                if self._stopped:
                    return
                pending = heapq.heappop(self._queue)
                self._busy = True
            try:
                self._attempt(pending)
            finally:
                with self._cv:
                    self._busy = False

    def _attempt(self, pending: Pending) -> None:
        status = self._post(pending)
        pending.attempts += 1
        pending.last_status, pending.last_attempt = status, time.time()
        self._record(pending, "delivered" if 200 <= status <= 204 else "failed")
        if 200 <= status <= 204:
            return
        scale = self.time_scale()
        expires = pending.published + pending.subscription.ttl_minutes * 60 * scale
        # Counted from when this attempt was due, not when it ended, so the schedule (and what
        # fits in the TTL) does not drift with the endpoint's answer times.
        next_due = pending.due + retry_delay(pending.attempts) * scale
        if status in NOT_RETRIED:
            reason = "UndeliverableDueToHttpBadRequest" if status == 400 else "UndeliverableDueToClientError"
        elif pending.attempts >= pending.subscription.max_attempts:
            reason = "MaxDeliveryAttemptsExceeded"
        elif next_due > expires:
            reason = "TimeToLiveExceeded"
        else:
            pending.due = next_due
            with self._cv:
                heapq.heappush(self._queue, pending)
                self._cv.notify_all()
            return
        self._dead_letter(pending, reason)

    def _post(self, pending: Pending) -> int:
        subscription = pending.subscription
        path = urlsplit(subscription.endpoint).path
        effect = self.faults.take("POST", DELIVERY_HOST, path)
        if effect.latency_s:
            time.sleep(effect.latency_s)
        if effect.status or effect.drop:
            status = effect.status or 0
            self.calls.record("POST", DELIVERY_HOST, path, status, dropped=effect.drop)
            return status
        body: Any
        if subscription.schema == "CloudEventSchemaV1_0":
            body, content_type = to_cloud_event(pending.event), "application/cloudevents+json; charset=utf-8"
        else:
            body, content_type = [pending.event], "application/json"
        request = urllib.request.Request(
            subscription.endpoint,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": content_type,
                "aeg-event-type": "Notification",
                "aeg-subscription-name": subscription.name.upper(),
                "aeg-delivery-count": str(pending.attempts),
                "aeg-data-version": "1",
                "aeg-metadata-version": "1",
            },
        )
        try:
            with self._opener.open(request, timeout=RESPONSE_TIMEOUT) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, TimeoutError):
            status = 0
        self.calls.record("POST", DELIVERY_HOST, path, status, dropped=status == 0)
        return status

    def _dead_letter(self, pending: Pending, reason: str) -> None:
        subscription = pending.subscription
        letter = {
            **pending.event,
            "deadLetterReason": reason,
            "deliveryAttempts": pending.attempts,
            "lastDeliveryOutcome": outcome_name(pending.last_status),
            "lastHttpStatusCode": pending.last_status,
            "publishTime": event_time(pending.published),
            "lastDeliveryAttemptTime": event_time(pending.last_attempt),
        }
        path = dead_letter_path(subscription.name, time.time())
        written = None
        if subscription.dead_letter is not None:
            try:
                subscription.dead_letter(path, json.dumps([letter], indent=2).encode())
                written = path
            except Exception as exc:  # noqa: BLE001 - Event Grid drops a dead letter it cannot write
                self._record(pending, "dropped", error=f"dead-letter write failed: {exc}")
                return
        self._record(pending, "dead-lettered" if written else "dropped", blob=written, reason=reason)
        # one short line in the host's log: what the dead-letter alert fires on
        log.warning(
            "Event Grid: event %s (%s %s) %s after %d attempt(s), %s: %s",
            pending.event["id"],
            pending.event["eventType"].rsplit(".", 1)[-1],
            pending.event["subject"],
            "dead-lettered" if written else "dropped (no dead-letter destination)",
            pending.attempts,
            reason,
            written or "-",
        )

    def _record(self, pending: Pending, outcome: str, **extra: Any) -> None:
        entry = {
            "subscription": pending.subscription.name,
            "eventId": pending.event["id"],
            "eventType": pending.event["eventType"],
            "subject": pending.event["subject"],
            "version": (pending.event.get("data") or {}).get("Version"),
            "attempt": pending.attempts,
            "status": pending.last_status,
            "outcome": outcome,
            "at": time.time(),
            **extra,
        }
        with self._cv:
            self._log.append(entry)
