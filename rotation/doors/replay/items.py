"""A failed item (a dead-lettered event or a poison request) and the selection of items an
operator asks for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotation.model.events import KeyEvent
from rotation.model.request import RotationRequest
from rotation.model.times import iso
from rotation.storage.ledger import Ledger

DISCARDED = "discarded"  # the marker's outcome once an operator discarded the item
_UNSETTLED = ("failed", "blocked", "interrupted")  # a replay that ended so leaves the item to do


@dataclass
class FailedItem:
    item_id: str  # the marker key: "<container>/<blob>#<event id or index>"
    source: str  # "deadletter" or "poison"
    location: str  # container/blob
    time: datetime | None
    event_id: str | None = None
    event_type: str | None = None
    key_id: str | None = None
    version: str | None = None
    reason: str | None = None
    attempts: int | None = None
    last_outcome: str | None = None
    last_status: int | None = None
    cause: str | None = None  # why it failed, from the audit trail of its last run
    error: str | None = None  # why it cannot be replayed (malformed, not a key event, ...)
    event: KeyEvent | None = field(default=None, repr=False)
    request: RotationRequest | None = field(default=None, repr=False)
    replayed: dict[str, Any] | None = None  # the Table marker, as stored
    replay_run_status: str | None = None  # a queued replay's run status now (RotationRuns)

    @property
    def replay_outcome(self) -> str | None:
        """How the last replay ended: a queued one's run status once it has one, else the marker's."""
        if not self.replayed:
            return None
        return self.replay_run_status or self.replayed.get("Outcome")

    @property
    def replayable(self) -> bool:
        return self.error is None and (self.event is not None or self.request is not None)

    @property
    def request_id(self) -> str | None:
        return self.request.request_id if self.request else None

    @property
    def run_id(self) -> str | None:
        """The run whose trail tells the story: the last replay's, else the poison request's own."""
        return (self.replayed or {}).get("RunId") or self.request_id

    @property
    def handle(self) -> str:
        """What an operator types to name the item: its event id, else its request id, else its id."""
        return self.event_id or self.request_id or self.item_id

    @property
    def discarded(self) -> bool:
        return (self.replayed or {}).get("Outcome") == DISCARDED

    @property
    def awaiting_replay(self) -> bool:
        """Never replayed, or the last replay did not converge; and not discarded."""
        return self.replay_outcome is None or self.replay_outcome in _UNSETTLED

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "source": self.source,
            "location": self.location,
            "time": iso(self.time) if self.time else None,
            "eventId": self.event_id,
            "eventType": self.event_type,
            "keyId": self.key_id,
            "version": self.version,
            "reason": self.reason,
            "attempts": self.attempts,
            "lastOutcome": self.last_outcome,
            "lastHttpStatus": self.last_status,
            "cause": self.cause,
            "error": self.error,
            "requestId": self.request_id,
            "runId": self.run_id,
            "discarded": self.discarded,
            "replayed": self._replayed_dict(),
        }

    def _replayed_dict(self) -> dict[str, Any] | None:
        shown = Ledger.replay_marker_dict(self.replayed)
        if shown is not None:
            shown["outcome"] = self.replay_outcome
        return shown


@dataclass(frozen=True)
class Selection:
    since: datetime | None = None
    until: datetime | None = None
    event_ids: tuple[str, ...] = ()
    key_id: str | None = None  # versionless
    reason: str | None = None
    not_replayed: bool = False  # only items replay would still take (needs the markers read)

    def matches(self, item: FailedItem) -> bool:
        if self.since and item.time and item.time < self.since:
            return False
        if self.until and item.time and item.time > self.until:
            return False
        if self.event_ids and not (
            {item.event_id, item.request.request_id if item.request else None} & set(self.event_ids)
        ):
            return False
        if self.key_id and (item.key_id or "").lower() != self.key_id.lower():
            return False
        if self.reason:
            text = " ".join(x for x in (item.reason, item.cause, item.error) if x).lower()
            if self.reason.lower() not in text:
                return False
        return True


def lower_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in raw.items()}


def path_time(name: str) -> datetime | None:
    """The hour a dead-letter blob was written, from <SUBSCRIPTION>/YYYY/M/D/H/<guid>.json."""
    parts = name.split("/")
    try:
        year, month, day, hour = (int(p) for p in parts[-5:-1])
        return datetime(year, month, day, hour, tzinfo=UTC)
    except (ValueError, IndexError):
        return None


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def pick(items: list[FailedItem], text: str) -> list[FailedItem]:
    """The items `text` names: exactly (id, event id or request id), else by a prefix of one."""
    wanted = text.strip().lower()
    if not wanted:
        return []

    def names(item: FailedItem) -> list[str]:
        return [n.lower() for n in (item.item_id, item.event_id, item.request_id) if n]

    exact = [item for item in items if wanted in names(item)]
    return exact or [item for item in items if any(n.startswith(wanted) for n in names(item))]
