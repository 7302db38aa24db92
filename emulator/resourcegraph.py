"""Azure Resource Graph over the emulator's state: `POST /providers/Microsoft.ResourceGraph/
resources` (api-version 2022-10-01) for the product's query shape only
(`resources | where type in~ ('t1', ...) | project c1, c2, ...`), answered from every resource
provider's rendering (the same body an ARM GET shows, `type` in lower case as Resource Graph
writes it), in pages of at most 1,000 rows with `$skipToken`, with the per-caller quota headers
`x-ms-user-quota-remaining` / `x-ms-user-quota-resets-after` (15 queries per 5 s window) and a
429 past it when throttling is on. A query it does not understand is answered 400, as the
service answers a malformed query."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .arm import arm_error, json_body
from .http import Request, Response

if TYPE_CHECKING:
    from .arm import ArmService

QUOTA, WINDOW_S = 15, 5.0
MAX_SUBSCRIPTIONS, MAX_TOP, DEFAULT_TOP = 1000, 1000, 100
_QUERY = re.compile(
    r"^\s*resources\s*\|\s*where\s+type\s+in~\s*\((?P<types>[^)]*)\)\s*\|\s*project\s+(?P<columns>[\w\s,]+?)\s*$",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'([^']*)'")


class ResourceGraph:
    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        self._windows: dict[str, tuple[float, int]] = {}  # caller -> (window start, queries used)
        self._lock = threading.Lock()
        arm.router.add("POST", r"/providers/Microsoft\.ResourceGraph/resources", self.query)

    def query(self, request: Request) -> Response:
        body = json_body(request)
        if isinstance(body, Response):
            return body
        allowed, headers = self._quota(request.principal or "anonymous")
        if not allowed:
            return arm_error(
                429,
                "RateLimiting",
                "Please provide below info when asking for support: quota exceeded.",
                headers,
            )
        parsed = _parse(body)
        if isinstance(parsed, Response):
            parsed.headers.update(headers)
            return parsed
        subscriptions, types, columns, start, top = parsed
        rows = self._rows(subscriptions, types, columns)
        page: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(rows[start : start + top]),
            "resultTruncated": "false",
            "data": rows[start : start + top],
            "facets": [],
        }
        if start + top < len(rows):
            page["$skipToken"] = base64.urlsafe_b64encode(str(start + top).encode()).decode()
        return Response.json(200, page, headers)

    def _rows(self, subscriptions: set[str], types: list[str], columns: list[str]) -> list[dict[str, Any]]:
        rows = []
        for resource_type in types:
            source: Callable[[set[str]], list[dict[str, Any]]] | None = self.arm.graph_sources.get(
                resource_type
            )
            for body in source(subscriptions) if source else []:
                row = {**body, "type": str(body.get("type", "")).lower()}
                rows.append({c: row.get(c) for c in columns})
        return sorted(rows, key=lambda r: str(r.get("id", "")).lower())

    def _quota(self, caller: str) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(caller, (now, 0))
            if now - start >= WINDOW_S:
                start, used = now, 0
            enforce = self.arm.throttle.enabled
            allowed = used < QUOTA or not enforce
            if allowed:
                used += 1
            self._windows[caller] = (start, used)
        left = max(0, QUOTA - used) if enforce else QUOTA - 1
        resets = max(0, int(WINDOW_S - (now - start) + 0.999))
        headers = {
            "x-ms-user-quota-remaining": str(left),
            "x-ms-user-quota-resets-after": f"00:00:{resets:02d}",
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, resets))
        return allowed, headers


def _parse(body: dict[str, Any]) -> tuple[set[str], list[str], list[str], int, int] | Response:
    subscriptions = body.get("subscriptions")
    if not isinstance(subscriptions, list) or not all(isinstance(s, str) for s in subscriptions):
        return arm_error(400, "BadRequest", "subscriptions: a list of subscription ids is required.")
    if len(subscriptions) > MAX_SUBSCRIPTIONS:
        return arm_error(400, "BadRequest", f"At most {MAX_SUBSCRIPTIONS} subscriptions per query.")
    match = _QUERY.match(str(body.get("query") or ""))
    if not match:
        return arm_error(400, "BadRequest", "Query is invalid. (the emulator knows only the product's query)")
    types = [t.lower() for t in _QUOTED.findall(match["types"])]
    columns = [c.strip() for c in match["columns"].split(",") if c.strip()]
    options = body.get("options") or {}
    top = options.get("$top", DEFAULT_TOP)
    if not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        return arm_error(400, "BadRequest", f"$top: 1 to {MAX_TOP}.")
    token = options.get("$skipToken")
    try:
        start = int(base64.urlsafe_b64decode(str(token)).decode()) if token else 0
    except ValueError:
        return arm_error(400, "BadRequest", "The $skipToken is invalid.")
    return {s.lower() for s in subscriptions}, types, columns, start, top
