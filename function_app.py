"""Azure Functions bindings. Each function only translates between the host and the
`rotation` package, which runs (and is tested) without the host."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

import azure.functions as func

from rotation import telemetry
from rotation.doors import sigterm

# Each function imports its door when first called, not here: the host imports this module to
# index the functions (its cold start), and a door's modules (the run, the SDKs) load only for
# the instance that is handed that door's work.
if TYPE_CHECKING:
    from rotation.service import Service

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("rotation.functions")
# The Python worker sets the root logger to INFO and forwards every record to the host; at INFO
# azure-core's HTTP logging policy formats two redacted records per SDK call (about 0.25 ms of
# CPU a call, measured). host.json's "Azure.Core": "Warning" says what is wanted; the product's
# own lines (rotation.*) and the audit trail say what each call did.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
telemetry.configure_from_environment()  # off (and nothing imported) unless the app settings say so
sigterm.stop_on_sigterm()  # the host stopping this instance closes the runs under way as `interrupted`


@app.function_name("on_key_event")
@app.event_grid_trigger(arg_name="event")
def on_key_event(event: func.EventGridEvent) -> None:
    """Key Vault events in Event Grid or CloudEvents schema (the host hands the latter over as
    func.CloudEvent; the annotation stays EventGridEvent because the indexer rejects a union)."""
    from rotation.doors import intake

    intake.handle_event(_service(ensure_storage=False), event)


@app.function_name("run_rotation")
@app.queue_trigger(arg_name="msg", queue_name="rotation-requests", connection="AzureWebJobsStorage")
def run_rotation(msg: func.QueueMessage) -> None:
    from rotation.doors import worker

    worker.handle_message(
        _service(ensure_storage=False),
        msg.get_body(),
        dequeue_count=msg.dequeue_count or 1,
        message_id=msg.id,
    )


def _service(*, ensure_storage: bool = True) -> Service:
    from rotation.service import service_for_environment

    return service_for_environment(ensure_storage=ensure_storage)


def _http(route: str, req: func.HttpRequest) -> func.HttpResponse:
    from rotation.config import ConfigError
    from rotation.doors import api, web

    try:
        service = _service(ensure_storage=False)  # prepared inside the door budget
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        body = json.dumps({"error": {"code": "ConfigurationError", "message": str(exc)}})
        return func.HttpResponse(body, status_code=500, mimetype="application/json")
    request = web.ApiRequest(
        method=req.method,
        url=req.url,
        headers=dict(req.headers),
        body=req.get_body(),
        query=dict(req.params),
        route=dict(req.route_params),
    )
    response = api.Api(service, os.environ).handle(route, request)
    return func.HttpResponse(
        response.json(), status_code=response.status, headers=response.headers, mimetype="application/json"
    )


@app.function_name("plan_rotation")
@app.route(route="rotations/plan", methods=["POST"])
def plan_rotation(req: func.HttpRequest) -> func.HttpResponse:
    return _http("plan", req)


@app.function_name("start_rotation")
@app.route(route="rotations", methods=["POST"])
def start_rotation(req: func.HttpRequest) -> func.HttpResponse:
    return _http("start", req)


@app.function_name("get_rotation")
@app.route(route="rotations/{runId}", methods=["GET"])
def get_rotation(req: func.HttpRequest) -> func.HttpResponse:
    return _http("status", req)


@app.function_name("list_audit")
@app.route(route="audit", methods=["GET"])
def list_audit(req: func.HttpRequest) -> func.HttpResponse:
    return _http("audit", req)


@app.function_name("list_inventory")
@app.route(route="inventory", methods=["GET"])
def list_inventory(req: func.HttpRequest) -> func.HttpResponse:
    return _http("inventory", req)


@app.function_name("sweep_drift")
@app.timer_trigger(schedule="%ROTATION_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sweep_drift(timer: func.TimerRequest) -> None:
    """Queue one request per key whose consumers drifted or whose version nears expiry."""
    from rotation.estate import sweep

    result = sweep.sweep(_service())
    queued = sum(1 for f in result.findings if f.request_id)
    log.info(
        "sweep queued %d of %d keys; %d discovery errors",
        queued,
        len(result.findings),
        len(result.discovery_errors),
    )
    if result.not_allowed.consumers:
        log.warning("sweep: %s", result.not_allowed.summary())
    if result.closed_runs:  # their closing shard's instance died and its message was poisoned
        log.warning("sweep closed sharded run(s) left open: %s", ", ".join(result.closed_runs))


@app.function_name("replay_failed")
@app.route(route="replay", methods=["POST"])
def replay_failed(req: func.HttpRequest) -> func.HttpResponse:
    return _http("replay", req)


@app.function_name("move_poison")
@app.timer_trigger(schedule="0 */15 * * * *", arg_name="timer", run_on_startup=False)
def move_poison(timer: func.TimerRequest) -> None:
    """Archive poison-queue messages as blobs before they expire or hide past the 32-message peek."""
    from rotation.doors import replay

    moved = replay.move_poison(_service())
    if moved:
        log.warning("moved %d poison message(s) to the rotation-poison container", moved)
