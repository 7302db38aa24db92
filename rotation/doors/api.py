"""HTTP routes (DESIGN.md section 7) as plain values in and out; function_app.py translates.

Bodies over 64 KiB: 413. Malformed JSON, unknown fields, bad ids: 400 with a message. A vault
not allowed by configuration: 403. Key Vault or ARM unreachable for a plan: 502. Storage or
the audit store that refuses or does not answer within ROTATION_DOOR_BUDGET_SECONDS: 503 with
Retry-After. Anything unforeseen: 500 with an incident id (the traceback goes to the log only).
Every answer is a code and one sentence; every refusal is audited with the caller's identity.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError

from rotation.azure.budget import BudgetExhausted, door_budget
from rotation.core.reconcile import Unreachable
from rotation.doors import MAX_AUDIT_TOP
from rotation.model.errors import RotationError
from rotation.model.ids import CONSUMER_TYPES, InvalidId, KeyRef, parse_key_id, parse_resource_id
from rotation.service import Service
from rotation.storage.audit import AuditTrail, AuditUnavailable
from rotation.storage.queue import InvalidRequest, enqueue, new_request, unique_targets

log = logging.getLogger("rotation.api")
MAX_BODY = 64 * 1024
MAX_REPLAY_ITEMS = 500
MAX_TARGETS = 1000
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_ASCII_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() also takes '²' and '٣'
RETRY_AFTER_SECONDS = 10
# Times outside this range are refused (year 1 overflows date arithmetic and strftime).
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ApiRequest:
    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive lookups through header()
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)
    route: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, default=str)


class ApiError(RotationError):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.headers: dict[str, str] = {}

    def response(self) -> ApiResponse:
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return ApiResponse(self.status, body, dict(self.headers))


# App roles (infra/entra/app-roles.json) each route needs when App Service authentication is on.
ROUTE_ROLES = {
    "plan": {"Rotation.Plan", "Rotation.Execute", "Rotation.Replay"},
    "status": {"Rotation.Plan", "Rotation.Execute", "Rotation.Replay"},
    "audit": {"Rotation.Plan", "Rotation.Execute", "Rotation.Replay"},
    "start": {"Rotation.Execute"},
    "replay": {"Rotation.Replay"},
    "inventory": {"Rotation.Plan", "Rotation.Execute", "Rotation.Replay"},
}
_ROLE_CLAIMS = {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}


def auth_enabled(environ: Mapping[str, str]) -> bool:
    return str(environ.get("WEBSITE_AUTH_ENABLED", "")).lower() == "true"


def roles_of(request: ApiRequest) -> set[str]:
    """App roles from X-MS-CLIENT-PRINCIPAL (base64 JSON that App Service authentication sets
    and strips from client requests)."""
    encoded = request.header("X-MS-CLIENT-PRINCIPAL")
    if not encoded:
        return set()
    try:
        principal = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return set()
    if not isinstance(principal, dict):  # base64 of a JSON array, string or number: no roles
        return set()
    claim_types = {*_ROLE_CLAIMS, str(principal.get("role_typ", "roles"))}
    return {
        str(c.get("val"))
        for c in principal.get("claims") or []
        if isinstance(c, dict) and c.get("typ") in claim_types
    }


def actor_of(request: ApiRequest, environ: Mapping[str, str]) -> str:
    """The caller as App Service authentication names it, only when that is on."""
    if auth_enabled(environ):
        name = request.header("X-MS-CLIENT-PRINCIPAL-NAME") or request.header("X-MS-CLIENT-PRINCIPAL-ID")
        if name:
            return _PRINTABLE.sub("", name)[:256] or "anonymous"
        return "anonymous"
    return "function-key"


def _body(request: ApiRequest, allowed: set[str], required: set[str]) -> dict[str, Any]:
    declared = request.header("Content-Length")
    declared_size = int(declared) if declared and _ASCII_DIGITS.fullmatch(declared) else 0
    if max(declared_size, len(request.body)) > MAX_BODY:
        raise ApiError(413, "PayloadTooLarge", f"request bodies are limited to {MAX_BODY} bytes")
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "InvalidJson", "the body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "InvalidJson", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "InvalidBody", "the body must be a JSON object")
    unknown = set(data) - allowed
    if unknown:
        raise ApiError(400, "UnknownField", f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = required - set(data)
    if missing:
        raise ApiError(400, "MissingField", f"missing field(s) {sorted(missing)}")
    return data


def _key(service: Service, value: Any, field_name: str = "keyId") -> KeyRef:
    if not isinstance(value, str):
        raise ApiError(400, "InvalidKeyId", f"{field_name} must be a key URL string")
    try:
        key = parse_key_id(value)
    except InvalidId as exc:
        raise ApiError(400, "InvalidKeyId", f"{field_name}: {exc}") from None
    if not service.settings.vault_allowed(key.vault_host):
        raise ApiError(403, "VaultNotAllowed", f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    return key


def _targets(service: Service, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_TARGETS:
        raise ApiError(400, "InvalidTargets", f"targets must be a list of 1-{MAX_TARGETS} ARM resource ids")
    try:
        targets = unique_targets(value)
    except InvalidId as exc:
        raise ApiError(400, "InvalidTargets", str(exc)) from None
    for target in targets:
        subscription = parse_resource_id(target, CONSUMER_TYPES).subscription
        if subscription not in service.settings.subscriptions:
            raise ApiError(
                403,
                "TargetNotAllowed",
                f"{target} is in subscription {subscription}, which is not in ROTATION_SUBSCRIPTIONS",
            )
    return targets


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, "InvalidBody", f"{name} must be true or false")
    return value


def _base_url(request: ApiRequest) -> str:
    match = re.match(r"^(https?://[^/]+)", request.url)
    return match.group(1) if match else ""


class Api:
    def __init__(self, service: Service, environ: Mapping[str, str]) -> None:
        self.service = service
        self.environ = environ

    def handle(self, route: str, request: ApiRequest) -> ApiResponse:
        """Answer one request within the door budget; never raises. Every refusal is audited
        (or, when the audit store cannot be written, logged whole)."""
        actor = actor_of(request, self.environ)
        with door_budget(self.service.settings.door_budget_seconds):
            try:
                return self._route(route, request, actor)
            except ApiError as error:
                if error.status in (400, 403, 413, 500, 503):
                    self._audit_rejection(route, actor, error)  # inside the budget: never hangs
                return error.response()

    def _route(self, route: str, request: ApiRequest, actor: str) -> ApiResponse:
        """The handler's answer, with every failure turned into an ApiError of one sentence."""
        try:
            self.service.ensure_storage()
            if auth_enabled(self.environ) and not roles_of(request) & ROUTE_ROLES[route]:
                raise ApiError(
                    403, "MissingRole", f"this route needs one of the app roles {sorted(ROUTE_ROLES[route])}"
                )
            return self._handlers()[route](request, actor)
        except ApiError:
            raise
        except BudgetExhausted:
            log.warning(
                "%s request ran out of its %ss budget", route, self.service.settings.door_budget_seconds
            )
            raise _unavailable("StorageTimeout", "storage did not answer in time; retry later") from None
        except AuditUnavailable as exc:
            log.error("%s request: %s", route, exc)
            raise _unavailable("AuditUnavailable", "the audit store cannot be written; retry later") from None
        except AzureError as exc:  # storage refused or failed: the SDK's text names internal endpoints
            log.error("%s request: storage failed: %s", route, exc)
            raise _unavailable("StorageUnavailable", "storage is not available; retry later") from None
        except Exception:
            incident = str(uuid.uuid4())
            log.exception("%s request failed unexpectedly (incident %s)", route, incident)
            raise ApiError(
                500, "InternalError", f"the request could not be handled (incident {incident})"
            ) from None

    def _handlers(self) -> dict[str, Callable[[ApiRequest, str], ApiResponse]]:
        return {
            "plan": self.plan,
            "start": self.start,
            "status": self.status,
            "audit": self.audit_list,
            "replay": self.replay,
            "inventory": self.inventory,
        }

    def _audit_rejection(self, route: str, actor: str, error: ApiError) -> None:
        """Audit a refused request; if storage refuses too, the log line carries the whole
        record, so nothing about the refusal is lost from the logs."""
        trail = AuditTrail(self.service.audit, actor=actor)  # no I/O until flush
        record = trail.record(
            "input-rejected",
            source="http",
            outcome="rejected",
            reason=error.code,
            message=error.message,
            detail={"route": route, "status": error.status},
        )
        try:
            trail.flush()
        except (AuditUnavailable, AzureError, BudgetExhausted) as exc:
            log.error(
                "could not audit a rejected %s request (%s); the record: %s",
                route,
                type(exc).__name__,
                json.dumps(record, default=str, ensure_ascii=False),
            )

    # -- POST /api/rotations/plan ---------------------------------------------------------------
    def plan(self, request: ApiRequest, actor: str) -> ApiResponse:
        data = _body(request, {"keyId", "targets"}, {"keyId"})
        key = _key(self.service, data["keyId"])
        targets = _targets(self.service, data.get("targets"))
        try:
            plan = self.service.reconciler.plan(key, targets)
        except Unreachable as exc:
            raise _read_error(exc) from None
        if plan.discovery_errors and all(e["unreachable"] for e in plan.discovery_errors) and not plan.steps:
            raise ApiError(
                502, "Unreachable", "ARM could not be read: " + plan.discovery_errors[0]["message"]
            )
        return ApiResponse(200, plan.to_dict())

    # -- POST /api/rotations -----------------------------------------------------------------
    def start(self, request: ApiRequest, actor: str) -> ApiResponse:
        data = _body(request, {"keyId", "targets", "dryRun"}, {"keyId"})
        key = _key(self.service, data["keyId"])
        targets = _targets(self.service, data.get("targets"))
        dry_run = _flag(data.get("dryRun"), "dryRun")
        if key.version:
            try:
                state = self.service.reconciler.read_state(key.versionless())
            except Unreachable as exc:
                raise _read_error(exc) from None
            desired = state.desired.version if state.desired else None
            if desired != key.version:
                raise ApiError(
                    409,
                    "NotDesiredVersion",
                    f"{key.version} is not the desired version of {key.versionless_id} "
                    f"(desired: {desired or 'none usable'})",
                    desiredVersion=desired,
                )
        try:
            queued = new_request(
                key, "http", actor, dry_run=dry_run, targets=targets, event_version=key.version
            )
            queued.encode()
        except InvalidRequest as exc:
            raise ApiError(413, "PayloadTooLarge", str(exc)) from None
        trail = AuditTrail(self.service.audit, run_id=queued.request_id, key=key, actor=actor)
        trail.record(
            "request-received",
            source="http",
            toVersion=key.version,
            detail={"dryRun": dry_run, "targets": list(targets) if targets else None},
        )
        # What is written before the enqueue is true whether or not the enqueue happens, and a
        # failure up to it answers 503 with nothing queued. The enqueue commits; what follows is
        # bookkeeping the worker repeats (it upserts the run record when it starts).
        trail.flush()
        enqueue(self.service.requests_queue, queued)
        try:
            self.service.runs.queued(
                queued.request_id, key_id=queued.key_id, source="http", actor=actor, dry_run=dry_run
            )
            trail.record("request-queued", source="http", outcome="queued")
            trail.flush()
        except (AuditUnavailable, AzureError, BudgetExhausted) as exc:
            log.error("run %s was queued, but its bookkeeping was not written: %s", queued.request_id, exc)
        status_url = f"{_base_url(request)}/api/rotations/{queued.request_id}"
        return ApiResponse(
            202, {"runId": queued.request_id, "statusUrl": status_url}, {"Location": status_url}
        )

    # -- GET /api/rotations/{runId} ------------------------------------------------------------
    def status(self, request: ApiRequest, actor: str) -> ApiResponse:
        run_id = request.route.get("runId", "")
        try:
            run_id = str(uuid.UUID(run_id))
        except ValueError:
            raise ApiError(400, "InvalidRunId", "runId must be a UUID") from None
        run = self.service.runs.get(run_id)
        if run is None:
            raise ApiError(404, "RunNotFound", f"no run {run_id}")
        return ApiResponse(200, run)

    # -- GET /api/audit ------------------------------------------------------------------------
    def audit_list(self, request: ApiRequest, actor: str) -> ApiResponse:
        query = dict(request.query)
        unknown = set(query) - {"key", "target", "run", "since", "until", "top", "continuation"}
        if unknown:
            raise ApiError(400, "UnknownParameter", f"unknown query parameter(s) {sorted(unknown)}")
        key = _key(self.service, query["key"], "key").versionless_id if query.get("key") else None
        target = None
        if query.get("target"):
            try:
                target = str(parse_resource_id(query["target"], CONSUMER_TYPES))
            except InvalidId as exc:
                raise ApiError(400, "InvalidTarget", str(exc)) from None
        run = None
        if query.get("run"):
            try:
                run = str(uuid.UUID(query["run"]))
            except ValueError:
                raise ApiError(400, "InvalidRunId", "run must be a UUID") from None
        since, until = _time(query.get("since"), "since"), _time(query.get("until"), "until")
        top = query.get("top", "100")
        if not _ASCII_DIGITS.fullmatch(top) or not 1 <= int(top) <= MAX_AUDIT_TOP:
            raise ApiError(400, "InvalidTop", f"top must be a whole number from 1 to {MAX_AUDIT_TOP}")
        try:
            records, continuation = self.service.audit.query(
                key=key,
                target=target,
                run=run,
                since=since,
                until=until,
                top=int(top),
                continuation=query.get("continuation"),
            )
        except ValueError as exc:
            raise ApiError(400, "InvalidQuery", str(exc)) from None
        return ApiResponse(200, {"records": records, "continuation": continuation})

    # -- GET /api/inventory (rotation/doors/inventory_api.py) ------------------------------------
    def inventory(self, request: ApiRequest, actor: str) -> ApiResponse:
        from rotation.doors.inventory_api import Refused, inventory

        try:
            return ApiResponse(200, inventory(self.service, request.query))
        except Refused as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None

    # -- POST /api/replay ----------------------------------------------------------------------
    def replay(self, request: ApiRequest, actor: str) -> ApiResponse:
        """Queue the selected failed items (HTTP answers are cut at 230 s, so nothing runs here)."""
        from rotation.doors.replay import Selection, list_failed, replay

        data = _body(request, {"since", "until", "eventIds", "key", "dryRun"}, set())
        event_ids = data.get("eventIds") or []
        if not isinstance(event_ids, list) or not all(
            isinstance(e, str) and 0 < len(e) <= 256 for e in event_ids
        ):
            raise ApiError(400, "InvalidEventIds", "eventIds must be a list of event or request ids")
        for name in ("since", "until"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ApiError(400, "InvalidTime", f"{name} must be an ISO 8601 time string")
        key = _key(self.service, data["key"], "key").versionless_id if data.get("key") else None
        dry_run = _flag(data.get("dryRun"), "dryRun")
        selection = Selection(
            since=_time(data.get("since"), "since"),
            until=_time(data.get("until"), "until"),
            event_ids=tuple(event_ids),
            key_id=key,
        )
        # Count before anything is moved: a refused request writes nothing. (Past the queue's
        # 32-message peek the second count can still refuse after moving, which only archives
        # what the 15-minute move_poison timer would.)
        items = _within_replay_limit(list_failed(self.service, selection, move=False))
        if not dry_run:
            items = _within_replay_limit(list_failed(self.service, selection, move=True))
        outcomes = replay(self.service, items, operator=actor, dry_run=dry_run)
        body = {
            "runIds": [o.run_id for o in outcomes if o.action == "queued"],
            "dryRun": dry_run,
            "items": [o.to_dict() for o in outcomes],
        }
        return ApiResponse(202, body)


def _within_replay_limit(items: list[Any]) -> list[Any]:
    if len(items) > MAX_REPLAY_ITEMS:
        raise ApiError(
            400,
            "TooManyItems",
            f"{len(items)} items match; narrow the selection to at most "
            f"{MAX_REPLAY_ITEMS} (or use `rotation replay`)",
        )
    return items


def _unavailable(code: str, message: str) -> ApiError:
    error = ApiError(503, code, message)
    error.headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return error


def _read_error(exc: Unreachable) -> ApiError:
    """Key Vault could not be read: 404 when the key does not exist, else 502 (a gateway problem)."""
    if exc.info.status == 404:
        return ApiError(404, "KeyNotFound", str(exc))
    return ApiError(502, "Unreachable", str(exc))


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(
            400, "InvalidTime", f"{name} must be an ISO 8601 time such as 2026-11-20T00:00:00Z"
        ) from None
    if not _EARLIEST <= moment < _LATEST:
        raise ApiError(400, "InvalidTime", f"{name} must be between the years 2000 and 9000")
    return moment
