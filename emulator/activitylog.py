"""The Azure Monitor activity log's management events (Microsoft.Insights, api-version 2015-04-01):
every ARM write that succeeded here (PUT, PATCH or DELETE on a resource, or an action POSTed on
one, such as HDInsight's `rotatediskencryptionkey`) is recorded with its caller, the way Azure
records one for each write, and served by
``GET /subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values``.

The caller is the principal of the bearer token the emulator itself issued (its ``oid``); the
correlation id is the request's ``x-ms-correlation-request-id`` or a new one. The ``$filter``
grammar is the one the spec documents: ``eventTimestamp ge '<t>'`` (required), optionally
``and eventTimestamp le '<t>'``, and one of ``resourceUri eq '<id>'``, ``resourceGroupName eq
'<rg>'`` or ``correlationId eq '<id>'``. Events come newest first, as Azure lists them.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from .arm import ArmService, arm_error, iso
from .http import Request, Response

API_VERSION = "2015-04-01"
_WRITES = {"PUT": "write", "PATCH": "write", "DELETE": "delete"}
_RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/[^/]+$",
    re.IGNORECASE,
)
# A POST of an action on a resource (`.../clusters/c1/rotatediskencryptionkey`): Azure logs it
# as `<namespace>/<type>/<action>/action`, on the resource's id.
_ACTION = re.compile(
    r"^(?P<resource>/subscriptions/[^/]+/resourceGroups/[^/]+/providers/[^/]+/[^/]+/[^/]+)/(?P<action>\w+)$",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"^\s*(\w+)\s+(eq|ge|le)\s+'([^']*)'\s*$", re.IGNORECASE)
_FIELDS = {
    "resourceuri": "resourceId",
    "resourcegroupname": "resourceGroupName",
    "correlationid": "correlationId",
}


class ActivityLog:
    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        arm.router.add(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Insights/eventtypes/management/values",
            self.list,
        )
        arm.on_answered.append(self.record)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every event, newest first (the admin route `GET /activity`)."""
        with self._lock:
            return list(reversed(self._events))

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def record(self, request: Request, response: Response) -> None:
        """One event for a successful write on a resource (not on an operation status URL), or
        for an action POSTed on one."""
        if not 200 <= response.status < 300:
            return
        verb, resource = _WRITES.get(request.method), request.path
        action = _ACTION.match(request.path) if request.method == "POST" else None
        if action is not None:
            verb, resource = f"{action['action']}/action", action["resource"]
        match = _RESOURCE.match(resource)
        if verb is None or match is None:
            return
        principal = self.arm.tokens.principal_of(request.principal or "")
        correlation = request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        response.headers.setdefault("x-ms-correlation-request-id", correlation)
        operation = f"{match['ns']}/{match['type']}/{verb}"
        status = "Accepted" if response.status == 202 else "Succeeded"
        event = {
            "authorization": {"action": operation, "scope": resource},
            "caller": principal,
            "claims": {"appid": request.principal, "oid": principal},
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "correlationId": correlation,
            "eventDataId": str(uuid.uuid4()),
            "eventName": {"value": "EndRequest", "localizedValue": "End request"},
            "eventTimestamp": iso(time.time()),
            "httpRequest": {
                "clientRequestId": request.headers.get("x-ms-client-request-id", ""),
                "method": request.method,
            },
            "id": f"{resource}/events/{uuid.uuid4()}",
            "level": "Informational",
            "operationId": str(uuid.uuid4()),
            "operationName": {"value": operation, "localizedValue": operation},
            "resourceGroupName": match["rg"],
            "resourceProviderName": {"value": match["ns"], "localizedValue": match["ns"]},
            "resourceId": resource,
            "resourceType": {"value": f"{match['ns']}/{match['type']}", "localizedValue": match["type"]},
            "status": {"value": status, "localizedValue": status},
            "subStatus": {"value": "", "localizedValue": ""},
            "submissionTimestamp": iso(time.time()),
            "subscriptionId": match["sub"],
            "tenantId": "",
        }
        with self._lock:
            self._events.append(event)

    def list(self, request: Request, sub: str) -> Response:
        if request.query.get("api-version") != API_VERSION:
            return arm_error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version must be '{API_VERSION}' for this resource type.",
            )
        wanted = _parse_filter(request.query_ci("$filter") or "")
        if isinstance(wanted, str):
            return arm_error(400, "BadRequest", wanted)
        since, until, field, value = wanted
        with self._lock:
            events = [
                e
                for e in self._events
                if e["subscriptionId"].lower() == sub.lower()
                and since <= _epoch(e["eventTimestamp"]) <= until
                and (field is None or str(e[field]).lower() == value.lower())
            ]
        return self.arm.page(request, list(reversed(events)))


def _parse_filter(text: str) -> tuple[float, float, str | None, str] | str:
    """(since, until, event field, value), or what is wrong with the filter."""
    since, until, field, value = None, float("inf"), None, ""
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        match = _CLAUSE.match(clause)
        if match is None:
            return f"The $filter clause '{clause}' is not supported."
        name, op, operand = match[1].lower(), match[2].lower(), match[3]
        if name == "eventtimestamp" and op in ("ge", "le"):
            try:
                moment = datetime.fromisoformat(operand.replace("Z", "+00:00")).astimezone(UTC).timestamp()
            except ValueError:
                return f"The eventTimestamp '{operand}' is not a valid date."
            since, until = (moment, until) if op == "ge" else (since, moment)
        elif name in _FIELDS and op == "eq":
            field, value = _FIELDS[name], operand
        else:
            return f"The $filter clause '{clause}' is not supported."
    if since is None:
        return "The $filter must contain eventTimestamp ge '<start time>'."
    return since, until, field, value


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
