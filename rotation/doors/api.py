"""HTTP routes (DESIGN.md section 7) as plain values in and out; function_app.py translates.

Bodies over 64 KiB: 413. Malformed JSON, unknown fields, bad ids: 400 with a message. A vault
not allowed by configuration: 403. Key Vault or ARM unreachable for a plan: 502. Storage or
the audit store that refuses or does not answer within ROTATION_DOOR_BUDGET_SECONDS: 503 with
Retry-After. Anything unforeseen: 500 with an incident id (the traceback goes to the log only).
Every answer is a code and one sentence; every refusal is audited with the caller's identity.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping

from azure.core.exceptions import AzureError

from rotation.azure.budget import BudgetExhausted, door_budget
from rotation.azure.kinds import parse_target
from rotation.doors import MAX_AUDIT_TOP
from rotation.doors.web import (
    ASCII_DIGITS,
    ROUTE_ROLES,
    ApiError,
    ApiRequest,
    ApiResponse,
    actor_of,
    auth_enabled,
    base_url,
    read_body,
    read_error,
    read_flag,
    read_key,
    read_targets,
    read_time,
    roles_of,
    unavailable,
    within_replay_limit,
)
from rotation.model.ids import InvalidId, KeyRef
from rotation.model.keystate import KeyState
from rotation.model.request import InvalidRequest, new_request
from rotation.run.gather import Unreachable
from rotation.run.planner import not_consumers_error
from rotation.service import Service
from rotation.storage.audit import AuditTrail, AuditUnavailable
from rotation.storage.queue import encode, enqueue

log = logging.getLogger("rotation.api")


def _budget_error(code: str | None) -> ApiError | None:
    """503 with Retry-After when the door's budget ran out: Key Vault and ARM were not found
    unreachable, they were not given the time."""
    if code != BudgetExhausted.__name__:
        return None
    return unavailable(
        "BudgetExhausted", "the request's time budget ran out before Key Vault or ARM answered"
    )


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
            raise unavailable("StorageTimeout", "storage did not answer in time; retry later") from None
        except AuditUnavailable as exc:
            log.error("%s request: %s", route, exc)
            raise unavailable("AuditUnavailable", "the audit store cannot be written; retry later") from None
        except AzureError as exc:  # storage refused or failed: the SDK's text names internal endpoints
            log.error("%s request: storage failed: %s", route, exc)
            raise unavailable("StorageUnavailable", "storage is not available; retry later") from None
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
        data = read_body(request, {"keyId", "targets"}, {"keyId"})
        key = read_key(self.service, data["keyId"])
        targets = read_targets(self.service, data.get("targets"))
        try:
            plan = self.service.reconciler.plan(key, targets)
        except Unreachable as exc:
            raise _budget_error(exc.info.code) or read_error(exc) from None
        if plan.discovery_errors and all(e["unreachable"] for e in plan.discovery_errors) and not plan.steps:
            raise ApiError(
                502, "Unreachable", "ARM could not be read: " + plan.discovery_errors[0]["message"]
            )
        if strangers := not_consumers_error(plan):
            raise ApiError(400, "NotAConsumer", strangers, notConsumers=list(plan.not_consumers))
        return ApiResponse(200, plan.to_dict())

    # -- POST /api/rotations -----------------------------------------------------------------
    def start(self, request: ApiRequest, actor: str) -> ApiResponse:
        data = read_body(request, {"keyId", "targets", "dryRun"}, {"keyId"})
        key = read_key(self.service, data["keyId"])
        targets = read_targets(self.service, data.get("targets"))
        dry_run = read_flag(data.get("dryRun"), "dryRun")
        state = self._checked_state(key, targets)
        if key.version:
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
            encode(queued)
        except InvalidRequest as exc:
            raise ApiError(413, "PayloadTooLarge", str(exc)) from None
        trail = AuditTrail(
            self.service.audit, run_id=queued.request_id, key=key, actor=actor, opened=queued.enqueued_at
        )
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
        status_url = f"{base_url(request)}/api/rotations/{queued.request_id}"
        return ApiResponse(
            202, {"runId": queued.request_id, "statusUrl": status_url}, {"Location": status_url}
        )

    def _checked_state(self, key: KeyRef, targets: tuple[str, ...] | None) -> KeyState:
        """Refuse at the door what the worker could only fail: a key that does not exist (one Key
        Vault read: 404) and named targets that do not use it (their ARM reads: 400)."""
        try:
            if targets is None:
                return self.service.reconciler.read_state(key.versionless())
            plan = self.service.reconciler.plan(key, targets)
        except Unreachable as exc:
            raise read_error(exc) from None
        if strangers := not_consumers_error(plan):
            raise ApiError(400, "NotAConsumer", strangers, notConsumers=list(plan.not_consumers))
        return plan.state

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
        key = read_key(self.service, query["key"], "key").versionless_id if query.get("key") else None
        target = None
        if query.get("target"):
            try:
                target = str(parse_target(query["target"]))
            except InvalidId as exc:
                raise ApiError(400, "InvalidTarget", str(exc)) from None
        run = None
        if query.get("run"):
            try:
                run = str(uuid.UUID(query["run"]))
            except ValueError:
                raise ApiError(400, "InvalidRunId", "run must be a UUID") from None
        since, until = read_time(query.get("since"), "since"), read_time(query.get("until"), "until")
        top = query.get("top", "100")
        if not ASCII_DIGITS.fullmatch(top) or not 1 <= int(top) <= MAX_AUDIT_TOP:
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

        data = read_body(request, {"since", "until", "eventIds", "key", "dryRun"}, set())
        event_ids = data.get("eventIds") or []
        if not isinstance(event_ids, list) or not all(
            isinstance(e, str) and 0 < len(e) <= 256 for e in event_ids
        ):
            raise ApiError(400, "InvalidEventIds", "eventIds must be a list of event or request ids")
        for name in ("since", "until"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ApiError(400, "InvalidTime", f"{name} must be an ISO 8601 time string")
        key = read_key(self.service, data["key"], "key").versionless_id if data.get("key") else None
        dry_run = read_flag(data.get("dryRun"), "dryRun")
        selection = Selection(
            since=read_time(data.get("since"), "since"),
            until=read_time(data.get("until"), "until"),
            event_ids=tuple(event_ids),
            key_id=key,
        )
        # Count before anything is moved: a refused request writes nothing. (Past the queue's
        # 32-message peek the second count can still refuse after moving, which only archives
        # what the 15-minute move_poison timer would.)
        items = within_replay_limit(list_failed(self.service, selection, move=False))
        if not dry_run:
            items = within_replay_limit(list_failed(self.service, selection, move=True))
        outcomes = replay(self.service, items, operator=actor, dry_run=dry_run)
        body = {
            "runIds": [o.run_id for o in outcomes if o.action == "queued"],
            "dryRun": dry_run,
            "items": [o.to_dict() for o in outcomes],
        }
        return ApiResponse(202, body)
