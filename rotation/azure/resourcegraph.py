"""Azure Resource Graph discovery: one paged query over up to 1,000 subscriptions at a time for
every kind whose consumers can be read from the resource alone, instead of one ARM list per
kind and subscription.

`POST /providers/Microsoft.ResourceGraph/resources` (api-version 2022-10-01) with
`{"subscriptions", "query", "options": {"$top", "$skipToken", "resultFormat": "objectArray"}}`
answers `{"data": [...], "$skipToken"?, "totalRecords", "count"}`. The projected columns are the
resource as ARM shows it (`id, name, type, location, tags, identity, properties`), so each kind
reads a row with the same `to_consumers` it uses for an ARM list. Resource Graph lags ARM by
seconds to minutes: it only finds consumers; every target is read through ARM before its write.
Its quota is per caller (`x-ms-user-quota-remaining`, `x-ms-user-quota-resets-after`): when
none is left, the next page waits for the window to reset, a wait capped and bounded by the
budget as every other wait is (`budget.bounded_wait`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rotation.azure import budget
from rotation.model.errors import RotationError

if TYPE_CHECKING:
    from rotation.azure.arm import Arm

API_VERSION = "2022-10-01"
PATH = "/providers/Microsoft.ResourceGraph/resources"
MAX_SUBSCRIPTIONS = 1000  # per request, as the service allows
PAGE_ROWS = 1000  # `$top`'s largest value
MAX_PAGES = 1000  # a million rows per batch of subscriptions: more is a broken answer
COLUMNS = "id, name, type, location, tags, identity, properties"
_TYPE = re.compile(r"^[A-Za-z0-9.]+/[A-Za-z0-9]+$")
_RESETS = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")


class GraphPagingRefused(RotationError):
    code = "PagingRefused"


def query_for(resource_types: Iterable[str]) -> str:
    """The one query: every resource of these types, projected as ARM shows it."""
    types = sorted({t.lower() for t in resource_types})
    if not types or not all(_TYPE.match(t) for t in types):  # the types come from the kinds, never input
        raise ValueError(f"resource types to query: {types!r}")
    listed = ", ".join(f"'{t}'" for t in types)
    return f"resources | where type in~ ({listed}) | project {COLUMNS}"


def resets_after(value: str | None) -> float | None:
    """`x-ms-user-quota-resets-after` ("hh:mm:ss", optionally "d.hh:mm:ss") in seconds."""
    match = _RESETS.match((value or "").strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def query_rows(
    arm: Arm,
    subscriptions: Iterable[str],
    resource_types: Iterable[str],
    *,
    max_wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Every row, batch by batch of subscriptions, page by page. A quota wait is cut to
    `max_wait` (ROTATION_MAX_RETRY_AFTER_SECONDS) and never outlasts the budget."""
    query = query_for(resource_types)
    subscriptions = list(subscriptions)
    for start in range(0, len(subscriptions), MAX_SUBSCRIPTIONS):
        batch = subscriptions[start : start + MAX_SUBSCRIPTIONS]
        yield from _pages(arm, batch, query, max_wait, sleep)


def _pages(
    arm: Arm,
    batch: list[str],
    query: str,
    max_wait: float,
    sleep: Callable[[float], None],
) -> Iterator[dict[str, Any]]:
    token: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        options: dict[str, Any] = {"$top": PAGE_ROWS, "resultFormat": "objectArray"}
        if token:
            options["$skipToken"] = token
        page, headers = arm.post(
            PATH, API_VERSION, {"subscriptions": batch, "query": query, "options": options}
        )
        page = page or {}
        yield from (row for row in page.get("data") or [] if isinstance(row, dict))
        token = page.get("$skipToken") or None
        if token is None:
            return
        if token in seen:
            raise GraphPagingRefused("Resource Graph answered a $skipToken already followed: paging stopped")
        seen.add(token)
        _wait_for_quota(headers, max_wait, sleep)
    raise GraphPagingRefused(f"Resource Graph answered more than {MAX_PAGES} pages: paging stopped")


def _wait_for_quota(headers: Mapping[str, str], max_wait: float, sleep: Callable[[float], None]) -> None:
    """No quota left in this window: wait for it to reset (a 429 otherwise costs a retry)."""
    left = {k.lower(): v for k, v in headers.items()}
    if left.get("x-ms-user-quota-remaining", "1").strip() != "0":
        return
    wait = resets_after(left.get("x-ms-user-quota-resets-after")) or 1.0
    sleep(budget.bounded_wait(wait, "the next Resource Graph page", cap=max_wait))
