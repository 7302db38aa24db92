"""The rotation request: the run's input value, whichever door made it (DESIGN.md section 7
gives its message schema; storage/queue.py is its codec)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from rotation.model.errors import RotationError
from rotation.model.ids import KeyRef, parse_key_id
from rotation.model.times import utc_now

SOURCES = ("event", "http", "sweep", "replay", "cli")


class InvalidRequest(RotationError, ValueError):
    """A queue message that is not a schema-1 rotation request."""


@dataclass(frozen=True)
class Shard:
    """What makes a request one shard of a large run (run/sharding.py): the parent run, its
    place among the parent's shards (from 1), and the parent's lease generation (`fence`)."""

    parent_run_id: str
    index: int
    count: int
    fence: int


@dataclass(frozen=True)
class RotationRequest:
    key_id: str  # versionless
    source: str
    actor: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    event_id: str | None = None
    event_type: str | None = None
    event_version: str | None = None
    dry_run: bool = False
    targets: tuple[str, ...] | None = None
    enqueued_at: str = field(default_factory=utc_now)
    lease_waits: int = 0
    shard: Shard | None = None  # set on a shard of a large run

    @property
    def key(self) -> KeyRef:
        return parse_key_id(self.key_id, allow_version=False)

    def waited(self) -> RotationRequest:
        """A copy to put back on the queue while another run holds the key's lease."""
        return replace(self, lease_waits=self.lease_waits + 1, enqueued_at=utc_now())


def new_request(key: KeyRef, source: str, actor: str, **fields: Any) -> RotationRequest:
    if source not in SOURCES:
        raise InvalidRequest(f"source must be one of {SOURCES}")
    return RotationRequest(key_id=key.versionless_id, source=source, actor=actor, **fields)
