"""The emulator application: routes each request to Key Vault, ARM, Event Grid, the identity
endpoint or the admin API, applying injected faults and recording every service call."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from . import scenario
from .activitylog import ActivityLog
from .aks import ManagedClusters
from .appconfiguration import ConfigurationStores
from .arm import ARM_AUDIENCES, ARM_HOSTS, ArmService
from .batch import BatchAccounts
from .containergroups import ContainerGroups
from .cosmos import CosmosAccounts
from .databricks import DatabricksWorkspaces
from .datafactory import DataFactories
from .deadletter import blob_writer
from .delivery import EventGridDelivery, subscription_from_spec
from .disk_encryption_sets import DiskEncryptionSets
from .eventgrid import EVENTGRID_SUFFIX, EventGridTopics
from .faults import ArmThrottle, CallLog, FaultBook, FaultEffect, Holds
from .flexible_servers import MySqlFlexibleServers, PostgresFlexibleServers
from .hdinsight import HDInsightClusters
from .http import Request, Response, Router
from .identity import TokenIssuer
from .keyevents import KeyEvents
from .keyvault import KeyVaultService, vault_audience
from .kusto import KustoClusters
from .loganalytics import LogAnalyticsClusters
from .messaging import EventHubNamespaces, ServiceBusNamespaces
from .registries import Registries
from .resourcegraph import ResourceGraph
from .resources import Resources
from .settings import Settings
from .sql_servers import SqlServers
from .state import World
from .storage_accounts import StorageAccounts
from .subscriptions import Subscriptions
from .synapse import SynapseWorkspaces

IDENTITY_PATH = "/msi/token"
_KV_ERROR_CODES = {
    400: "BadParameter",
    401: "Unauthorized",
    403: "Forbidden",
    404: "KeyNotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_VAULT_HOST = re.compile(r"^[a-z0-9-]{3,24}\.(?:vault|managedhsm)\.")
# Hosts under the reserved `.test` top-level domain (RFC 2606) stand for a foreign server an
# answer may point at: served here, each call recorded (with whether it carried a token), so a
# test can prove nothing reached them.
FOREIGN_SUFFIX = ".test"


def _done(action: Callable[[], None]) -> Response:
    """Run an admin action that answers nothing, then say so (204)."""
    action()
    return Response.empty(204)


def shaped(response: Response, effect: FaultEffect) -> Response:
    """The answer as a fault reshapes it: headers set (or, given None, removed), the body's `nextLink` replaced, the body
    dripped or replaced by a large one sent without a length."""
    for name, value in effect.headers.items():
        for present in [k for k in response.headers if k.lower() == name.lower()]:
            del response.headers[present]
        if value is not None:  # None: the header is taken away
            response.headers[name] = value
    if effect.next_link is not None:
        try:
            payload = json.loads(response.body or b"{}")
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            payload["nextLink"] = effect.next_link
            response.body = json.dumps(payload, separators=(",", ":")).encode()
    if effect.body_bytes:
        response.body, response.chunks = b"", _large_body(effect.body_bytes)
    response.drip_s = effect.drip_ms / 1000
    return response


def _large_body(size: int, piece: int = 65536) -> Iterator[bytes]:
    """A JSON list answer `size` bytes long, made as it is sent (never held whole)."""
    head, tail = b'{"value":[],"padding":"', b'"}'
    yield head
    left = max(0, size - len(head) - len(tail))
    while left > 0:
        yield b"x" * min(piece, left)
        left -= piece
    yield tail


class EmulatorApp:
    def __init__(self, identity_secret: str | None = None) -> None:
        self.world = World()
        self.settings = Settings()
        self.tokens = TokenIssuer(identity_secret)
        self.faults = FaultBook()
        self.calls = CallLog()
        self.throttle = ArmThrottle()
        # Each scenario load (a test's reset) starts a generation; a call held by a latency fault
        # across one is dropped, so a write an earlier test left held never lands on the next
        # test's world (a resource of the same name there).
        self.generation = 0
        self.holds = Holds()
        # Whether anything but a read happened since the last POST /reset, and that reset's body:
        # the same reset again on an untouched emulator has nothing to undo (a test's teardown
        # resets, then the next test's setup asks for the same slate).
        self.dirty = True
        self.last_reset: dict[str, Any] | None = None
        self.keyvault = KeyVaultService(self.world, self.tokens, self.settings)
        self.arm = ArmService(self.world, self.tokens, self.throttle, self.settings)
        Registries(self.arm)
        BatchAccounts(self.arm)
        ContainerGroups(self.arm)
        for keyed in (
            LogAnalyticsClusters,
            KustoClusters,
            EventHubNamespaces,
            ServiceBusNamespaces,
            CosmosAccounts,
            ManagedClusters,
            ConfigurationStores,
            HDInsightClusters,
            SynapseWorkspaces,
            PostgresFlexibleServers,
            MySqlFlexibleServers,
        ):
            keyed(self.arm)
        StorageAccounts(self.arm)
        DiskEncryptionSets(self.arm)
        SqlServers(self.arm)
        DataFactories(self.arm)
        DatabricksWorkspaces(self.arm)
        Subscriptions(self.arm)
        Resources(self.arm)
        ResourceGraph(self.arm)
        self.activity = ActivityLog(self.arm)
        self.eventgrid = EventGridTopics(self.tokens)
        self.delivery = EventGridDelivery(
            self.faults, self.calls, lambda: self.settings.event_grid_time_scale
        )
        self.key_events = KeyEvents(self.world, self._publish)
        self.keyvault.on_new_version = self.key_events.new_version
        self.tokens.principal_of = self._principal_of
        self.key_events.baseline()
        self.admin = Router()
        self._admin_routes()

    def load_scenario(self, body: Any) -> None:
        """Replace the world with a scenario. Every load re-baselines the key events: a version
        already inside the near-expiry window when it loads fires nothing until the clock moves."""
        self._replace_world(body)
        self.dirty = True

    def _replace_world(self, body: Any) -> None:
        scenario.load(self.world, body)
        self.generation += 1
        self.holds.release()  # the calls held for the old world are dropped now, not later
        self.arm.operations.clear()
        self.activity.clear()
        self.key_events.baseline()

    # -- what the proxy asks -----------------------------------------------------------------
    def intercepts(self, host: str) -> bool:
        return (
            bool(vault_audience(host))
            or host in ARM_HOSTS
            or host.endswith(EVENTGRID_SUFFIX)
            or host.endswith(FOREIGN_SUFFIX)
        )

    def resolves(self, host: str) -> bool:
        if vault_audience(host):
            with self.world.lock:
                return self.world.vault_for_host(host) is not None
        return True

    def _publish(self, topic: str, event: dict[str, Any]) -> int:
        self.dirty = True  # the expiry watch fires events on the wall clock, between requests
        return self.delivery.publish(topic, event)

    def handle(self, request: Request) -> Response:
        if not (request.scheme == "http" and request.method == "GET") and request.path != "/reset":
            self.dirty = True
        if request.scheme == "http":
            if request.path == IDENTITY_PATH:
                return self._serve_service(request, "identity")
            response = self.admin.dispatch(request)
            return response or Response.json(
                404, {"error": f"no admin route {request.method} {request.path}"}
            )
        if vault_audience(request.host) and _VAULT_HOST.match(request.host):
            return self._serve_service(request, "keyvault")
        if request.host in ARM_HOSTS:
            return self._serve_service(request, "arm")
        if request.host.endswith(EVENTGRID_SUFFIX):
            return self._serve_service(request, "eventgrid")
        if request.host.endswith(FOREIGN_SUFFIX):
            return self._serve_service(request, "foreign")
        return Response.json(502, {"error": f"host {request.host} is not emulated"})

    def _serve_service(self, request: Request, service: str) -> Response:
        host = "identity" if service == "identity" else request.host
        generation = self.generation
        effect = self.faults.take(request.method, host, request.path)
        if effect.latency_s:
            self.holds.wait(effect.latency_s)
        if generation != self.generation:  # a scenario load replaced the world it was sent to
            return Response(0, drop=True)  # unrecorded: the call log now belongs to the next test
        authorized = "authorization" in request.headers
        if effect.drop:
            self.calls.record(request.method, host, request.path, 0, dropped=True, authorized=authorized)
            return Response(0, drop=True)
        request.lro_result = effect.lro_result
        if effect.status:
            response = self._fault_response(service, request, effect.status, effect.retry_after)
        elif service == "identity":
            response = self.tokens.handle(request)
        elif service == "keyvault":
            response = self.keyvault.handle(request)
        elif service == "arm":
            response = self.arm.handle(request)
        elif service == "foreign":  # what a hostile server would like to be believed
            response = Response.json(200, {"status": "Succeeded", "value": [], "nextLink": None})
        else:
            response = self.eventgrid.handle(request)
        if effect.drop_response:  # the work is done, the answer is lost on the way back
            self.calls.record(
                request.method, host, request.path, response.status, dropped=True, authorized=authorized
            )
            return Response(0, drop=True)
        self.calls.record(request.method, host, request.path, response.status, authorized=authorized)
        return shaped(response, effect)

    def _fault_response(
        self, service: str, request: Request, status: int, retry_after: str | None
    ) -> Response:
        if service == "arm":
            token = self.tokens.check(request, ARM_AUDIENCES)  # name the caller, as ARM's 403 does
            request.principal = token.caller if token else None
            return self.arm.fault_response(status, retry_after, request)
        code = _KV_ERROR_CODES.get(status, "Error")
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Response.json(
            status, {"error": {"code": code, "message": f"Injected fault: {status} {code}."}}, headers
        )

    # -- admin API ---------------------------------------------------------------------------
    def _admin_routes(self) -> None:
        add = self.admin.add
        add("GET", r"/health", lambda r: Response.json(200, {"status": "ok"}))
        add("GET", r"/state", self._get_state)
        add("POST", r"/scenario", self._post_scenario)
        add("POST", r"/reset", self._post_reset)
        add("GET", r"/calls", lambda r: Response.json(200, self.calls.snapshot()))
        add("GET", r"/activity", lambda r: Response.json(200, {"events": self.activity.snapshot()}))
        add("DELETE", r"/calls", _then_204(self.calls.clear))
        add("GET", r"/faults", lambda r: Response.json(200, {"faults": self.faults.list()}))
        add("POST", r"/faults", self._post_fault)
        add("DELETE", r"/faults", _then_204(self.faults.clear))
        add("POST", r"/faults/release", lambda r: Response.json(200, {"released": self.holds.release()}))
        add("POST", r"/throttling", self._post_throttling)
        add(
            "GET",
            r"/throttling",
            lambda r: Response.json(
                200, {"enabled": self.throttle.enabled, "throttled": self.throttle.throttled}
            ),
        )
        add("GET", r"/config", lambda r: Response.json(200, self.settings.describe()))
        add("POST", r"/config", self._post_config)
        add("GET", r"/events", lambda r: Response.json(200, {"events": self.eventgrid.received()}))
        add("DELETE", r"/events", _then_204(self.eventgrid.clear))
        add(
            "POST",
            r"/operations/finish",
            lambda r: Response.json(200, {"finished": self.arm.operations.finish_now()}),
        )
        add("GET", r"/clock", lambda r: Response.json(200, self.key_events.describe()))
        add("POST", r"/clock", self._post_clock)
        add(
            "GET",
            r"/eventgrid/subscriptions",
            lambda r: Response.json(200, {"value": self.delivery.subscriptions()}),
        )
        add("POST", r"/eventgrid/subscriptions", self._post_subscription)
        add(
            "DELETE",
            r"/eventgrid/subscriptions",
            _then_204(self.delivery.unsubscribe_all),
        )
        add(
            "GET", r"/eventgrid/deliveries", lambda r: Response.json(200, {"deliveries": self.delivery.log()})
        )
        add("DELETE", r"/eventgrid/deliveries", _then_204(self.delivery.clear_log))

    def _principal_of(self, client_id: str) -> str:
        with self.world.lock:
            for identity in self.world.identities.values():
                if identity.client_id.lower() == client_id.lower():
                    return identity.principal_id
        return client_id

    def _post_clock(self, request: Request) -> Response:
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        advance = body.get("advance")
        try:
            if set(body) != {"advance"} or not isinstance(advance, str):
                raise scenario.ScenarioError('expected {"advance": "29d"} (s, m, h or d)')
            seconds = scenario.parse_time("+" + advance.strip().lstrip("+"), "advance", base=0) or 0
            fired = self.key_events.advance(seconds)
        except (scenario.ScenarioError, ValueError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(
            200,
            {
                **self.key_events.describe(),
                "fired": [
                    {"eventType": e["eventType"], "subject": e["subject"], "id": e["id"]} for e in fired
                ],
            },
        )

    def _post_subscription(self, request: Request) -> Response:
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        try:
            connection = body.get("deadLetterConnectionString")
            writer = (
                blob_writer(connection, body.get("deadLetterContainer") or "eventgrid-deadletters")
                if connection
                else None
            )
            subscription = subscription_from_spec(body, writer)
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})
        self.delivery.subscribe(subscription)
        return Response.json(201, subscription.describe())

    def _get_state(self, request: Request) -> Response:
        self.arm.operations.settle()
        return Response.json(200, scenario.dump(self.world))

    def _post_scenario(self, request: Request) -> Response:
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        try:
            self.load_scenario(body)
        except scenario.ScenarioError as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(
            200,
            {
                "loaded": True,
                "vaults": len(self.world.vaults),
                "registries": len(self.world.registries),
                "batchAccounts": len(self.world.batch_accounts),
                "containerGroups": len(self.world.container_groups),
                "keyedResources": len(self.world.keyed),
            },
        )

    def _post_fault(self, request: Request) -> Response:
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        try:
            return Response.json(201, {"id": self.faults.add(body)})
        except (ValueError, re.error) as exc:
            return Response.json(400, {"error": str(exc)})

    def _post_throttling(self, request: Request) -> Response:
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("enabled"), bool):
            return Response.json(400, {"error": 'expected {"enabled": true|false}'})
        self.throttle.set_enabled(body["enabled"])
        return Response.json(200, {"enabled": self.throttle.enabled})

    def _post_config(self, request: Request) -> Response:
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        try:
            self.settings.update(body)
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"error": str(exc)})
        return Response.json(200, self.settings.describe())

    def _post_reset(self, request: Request) -> Response:
        """`{"scenario": {...}, "config": {...}}`: a test's clean slate in one call. Faults,
        throttling, calls and events cleared, the scenario loaded; with "config", every knob at
        its default but those given (without it, the knobs stay). `reset` is false when the
        emulator was left untouched since the same reset, which then had nothing to undo."""
        body = _admin_json(request)
        if isinstance(body, Response):
            return body
        if (
            "scenario" not in body
            or set(body) - {"scenario", "config"}
            or not isinstance(body.get("config", {}), dict)
        ):
            return Response.json(400, {"error": 'expected {"scenario": {...}, "config": {...}}'})
        if not self.dirty and body == self.last_reset:
            return Response.json(200, {"reset": False})
        try:
            knobs = Settings()
            knobs.update(body.get("config") or {})  # checked before anything changes
            self.dirty = False  # before the work: a call that lands during it marks it again
            self._replace_world(body["scenario"])
        except (scenario.ScenarioError, ValueError, TypeError, AttributeError) as exc:
            self.dirty = True
            return Response.json(400, {"error": str(exc)})
        if "config" in body:
            self.settings.adopt(knobs)
        self.last_reset = body
        self.faults.clear()
        self.throttle.set_enabled(False)
        self.calls.clear()
        self.eventgrid.clear()
        return Response.json(200, {"reset": True})


def _then_204(action: Callable[[], None]) -> Callable[[Request], Response]:
    """An admin route that does `action` and answers 204."""

    def route(request: Request) -> Response:
        action()
        return Response.empty(204)

    return route


def _admin_json(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return Response.json(400, {"error": "body is not valid JSON"})
    if not isinstance(body, dict):
        return Response.json(400, {"error": "body must be a JSON object"})
    return body
