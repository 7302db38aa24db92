"""Who last wrote a resource, from the Azure Monitor activity log (management events,
Microsoft.Insights api-version 2015-04-01): `caller`, `operationName`, `eventTimestamp`,
`correlationId`, `status`.

Read once per consumer found reverted (run/reverts.py), never per target: the first page of
`eventtypes/management/values` filtered to the resource and the time since this system wrote it.
An answer that cannot be had (403 without the role action below, 404, throttled past the
budget) is a value too: the revert is still recorded, with who changed it unknown.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rotation.azure.retry import Deadline, RetryPolicy, call, classify
from rotation.model.ids import InvalidId, parse_resource_id
from rotation.model.times import iso

if TYPE_CHECKING:
    from rotation.azure.arm import Arm

API_VERSION = "2015-04-01"
# The ARM action the read needs: infra/modules/custom-roles.bicep grants it.
READ_ACTION = "Microsoft.Insights/eventtypes/values/read"
# The activity log keeps 90 days; a query starting earlier is asked from just inside that.
RETENTION = timedelta(days=89)


@dataclass(frozen=True)
class Change:
    """The latest write on a resource, or why it is not known (`unreadable`)."""

    caller: str | None = None
    operation: str | None = None
    at: str | None = None  # the event's eventTimestamp, as ARM wrote it
    correlation_id: str | None = None
    status: str | None = None
    unreadable: str | None = None  # e.g. "403 AuthorizationFailed"

    def describe(self) -> str:
        if self.caller is None:
            reason = f"activity log not readable: {self.unreadable}" if self.unreadable else "no write logged"
            return f"unknown ({reason})"
        return f"{self.caller} ({self.operation}, correlation {self.correlation_id}, at {self.at})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "caller": self.caller,
            "operation": self.operation,
            "at": self.at,
            "correlationId": self.correlation_id,
            "status": self.status,
            "unreadable": self.unreadable,
        }


def events_path(resource_id: str, since: datetime, now: datetime | None = None) -> str:
    """The list request for one resource's events since `since` (the filter is URL-quoted),
    never further back than the activity log keeps events."""
    subscription = parse_resource_id(resource_id, None).subscription
    since = max(since, (now or datetime.now(UTC)) - RETENTION)
    query = f"eventTimestamp ge '{iso(since)}' and resourceUri eq '{resource_id}'"
    return (
        f"/subscriptions/{quote(subscription)}/providers/Microsoft.Insights/eventtypes/management/values"
        f"?$filter={quote(query, safe='')}"
    )


def last_write(
    arm: Arm,
    resource_id: str,
    since: datetime,
    *,
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    actions: Collection[str] = (),
) -> Change:
    """The latest write on `resource_id` since `since` that did not fail; never raises for
    what Azure answers (a bug in building the request still does). `actions`: operation names
    (lower case) that are writes too, such as the actions kinds move keys with."""
    try:
        path = events_path(resource_id, since)
    except InvalidId as exc:
        return Change(unreadable=f"InvalidId: {exc}")
    try:
        page = call(
            lambda: arm.get(path, API_VERSION),
            policy=policy,
            deadline=deadline,
            what=f"read the activity log of {resource_id}",
        )
    except Exception as exc:  # noqa: BLE001 - who changed it is context; the revert is recorded anyway
        info = classify(exc)
        return Change(unreadable=f"{info.status or ''} {info.code}".strip())
    if page is None:
        return Change(unreadable="404 NotFound")
    return latest_write(page.get("value") or [], actions)


def latest_write(events: list[Any], actions: Collection[str] = ()) -> Change:
    """The newest successful (or accepted) write or delete among activity-log events; an
    operation named in `actions` (lower case) counts as a write."""
    writes = [
        e
        for e in events
        if isinstance(e, dict)
        and _is_write(_value(e.get("operationName")).lower(), actions)
        and _value(e.get("status")) not in ("Failed", "Canceled")
    ]
    if not writes:
        return Change()
    event = max(writes, key=lambda e: str(e.get("eventTimestamp") or ""))
    return Change(
        caller=str(event.get("caller") or "") or None,
        operation=_value(event.get("operationName")) or None,
        at=str(event.get("eventTimestamp") or "") or None,
        correlation_id=str(event.get("correlationId") or "") or None,
        status=_value(event.get("status")) or None,
    )


def _is_write(operation: str, actions: Collection[str]) -> bool:
    return operation.endswith(("/write", "/delete")) or operation in actions


def _value(field: Any) -> str:
    """A localizable string's `value` (operationName, status)."""
    return str(field.get("value") or "") if isinstance(field, dict) else str(field or "")
