"""Azure Resource Manager front door: authentication, api-version, throttling, paging,
long-running operations and error bodies shared by the resource providers.

Long-running operations follow ARM's async pattern: the write answers 201/202 with
``Azure-AsyncOperation`` (an ``operationStatuses`` URL) and ``Retry-After``; the status URL
answers ``InProgress`` until the operation's time has passed, then ``Succeeded`` (the change is
applied at that moment) or ``Failed`` (nothing changes).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .faults import ArmThrottle
from .http import Request, Response, Router
from .identity import TokenIssuer
from .settings import Settings
from .state import World, arm_parts, now

ARM_HOSTS = {
    "management.azure.com": "https://management.azure.com",
    "management.chinacloudapi.cn": "https://management.chinacloudapi.cn",
    "management.usgovcloudapi.net": "https://management.usgovcloudapi.net",
}
ARM_AUDIENCES = {
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.chinacloudapi.cn",
    "https://management.core.chinacloudapi.cn",
    "https://management.usgovcloudapi.net",
    "https://management.core.usgovcloudapi.net",
}
# The status link's last-but-one segment where a provider names its own (the database
# providers' specs: `locations/{l}/azureAsyncOperation/{id}`; App Configuration registers only
# `locations/operationsStatus` as an operation); others use `operations`. Its path is the RBAC
# action the caller needs, so it must be one the provider registers (infra/README.md).
ASYNC_SEGMENTS = {
    "microsoft.dbforpostgresql": "azureAsyncOperation",
    "microsoft.dbformysql": "azureAsyncOperation",
    "microsoft.appconfiguration": "operationsStatus",
    "microsoft.databricks": "operationStatuses",
}
# Providers whose status link sits under the resource group (a recorded Databricks answer:
# `resourceGroups/{g}/providers/Microsoft.Databricks/locations/{l}/operationStatuses/{id}`).
GROUP_SCOPED_STATUS = {"microsoft.databricks"}
# Providers whose `Location` link sits at the resource (HDInsight's spec example:
# `clusters/{c}/operationresults/{id}`); others at `locations/{l}/operationResults/{id}`.
RESOURCE_SCOPED_RESULTS = {"microsoft.hdinsight"}
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_SUBSCRIPTION = re.compile(r"^/subscriptions/(?P<sub>[^/]+)", re.IGNORECASE)
_ERROR_CODES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}}, headers)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(order=True)
class Operation:
    due: float
    id: str = field(compare=False)
    resource_id: str = field(compare=False)
    namespace: str = field(compare=False)
    location: str = field(compare=False)
    subscription: str = field(compare=False)
    apply: Callable[[], None] = field(compare=False)
    revert: Callable[[], None] = field(compare=False)
    result: str = field(compare=False, default="Succeeded")
    status: str = field(compare=False, default="InProgress")
    started: float = field(compare=False, default_factory=time.time)
    ended: float | None = field(compare=False, default=None)
    final: Callable[[], dict[str, Any]] | None = field(compare=False, default=None)  # Location's last answer


class Operations:
    """Pending and finished long-running operations; settled lazily on every ARM call."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._by_id: dict[str, Operation] = {}
        self._pending: list[Operation] = []
        self._busy: dict[str, Operation] = {}  # resource id (lower) -> its running operation
        self._lock = threading.Lock()

    def start(self, op: Operation) -> None:
        with self._lock:
            self._by_id[op.id] = op
            self._busy[op.resource_id.lower()] = op
            heapq.heappush(self._pending, op)

    def busy(self, resource_id: str) -> bool:
        self.settle()
        with self._lock:
            return resource_id.lower() in self._busy

    def get(self, op_id: str) -> Operation | None:
        self.settle()
        with self._lock:
            return self._by_id.get(op_id)

    def settle(self) -> None:
        """Finish every operation whose time has come (apply on success, revert on failure)."""
        moment = time.time()
        while True:
            with self._lock:
                if not self._pending or self._pending[0].due > moment:
                    return
                op = heapq.heappop(self._pending)
                self._busy.pop(op.resource_id.lower(), None)
            with self.world.lock:
                (op.apply if op.result == "Succeeded" else op.revert)()
            op.status, op.ended = op.result, time.time()

    def finish_now(self) -> int:
        """End every pending operation now, as if its time had come (tests that must not wait
        on the clock for a long-running write); how many there were."""
        with self._lock:
            pending = len(self._pending)
            for op in self._pending:
                op.due = 0.0
        self.settle()
        return pending

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._pending.clear()
            self._busy.clear()


class ArmService:
    """Routes ARM requests to the resource providers registered on ``router``."""

    def __init__(self, world: World, tokens: TokenIssuer, throttle: ArmThrottle, settings: Settings) -> None:
        self.world = world
        self.tokens = tokens
        self.throttle = throttle
        self.settings = settings
        self.operations = Operations(world)
        # resource type (lower case) -> every resource of it in these subscriptions, as a GET shows
        # it: what Resource Graph answers from (resourcegraph.py)
        self.graph_sources: dict[str, Callable[[set[str]], list[dict[str, Any]]]] = {}
        self.router = Router()
        self._op_ids = itertools.count(1)
        # Told of every answered request (emulator/activitylog.py records the writes).
        self.on_answered: list[Callable[[Request, Response], None]] = []
        # The status URL shapes the resource providers hand out in Azure-AsyncOperation:
        # Container Registry scopes it to the registry, Container Instances to a location.
        self.router.add(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/[^/]+/providers/[^/]+/[^/]+/[^/]+/"
            r"operationStatuses/(?P<op_id>[^/]+)",
            self.operation_status,
        )
        self.router.add(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/[^/]+/locations/[^/]+/"
            r"(?:operations|operationStatuses|operationsStatus|[a-z]*azureAsyncOperation)/(?P<op_id>[^/]+)",
            self.operation_status,
        )
        self.router.add(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/providers/[^/]+/locations/[^/]+/[a-z]*operationResults/(?P<op_id>[^/]+)",
            self.operation_result,
        )
        self.router.add(
            "GET",
            r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/[^/]+/providers/[^/]+/[^/]+/[^/]+/"
            r"operationResults/(?P<op_id>[^/]+)",
            self.operation_result,
        )

    def handle(self, request: Request) -> Response:
        token = self.tokens.check(request, ARM_AUDIENCES)
        if token is None:
            missing = "authorization" not in request.headers
            return arm_error(
                401,
                "AuthenticationFailed" if missing else "InvalidAuthenticationToken",
                "Authentication failed. The 'Authorization' header is missing."
                if missing
                else "The access token is invalid or has expired.",
                {
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", '
                    'error="invalid_token"'
                },
            )
        request.principal = token.caller
        api_version = request.query.get("api-version")
        if not api_version:
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if not _API_VERSION.match(api_version):
            return arm_error(
                400, "InvalidApiVersionParameter", f"The api-version '{api_version}' is invalid."
            )
        subscription = _SUBSCRIPTION.match(request.path)
        extra_headers: dict[str, str] = {"x-ms-request-id": str(uuid.uuid4())}
        if subscription:
            allowed, throttle_headers, wait = self.throttle.take(
                subscription["sub"].lower(), token.caller, request.method
            )
            extra_headers.update(throttle_headers)
            if not allowed:
                kind = self.throttle.kind(request.method)
                return arm_error(
                    429,
                    "SubscriptionRequestsThrottled",
                    f"Number of '{kind}' requests for subscription '{subscription['sub']}' actor "
                    f"'{token.caller}' exceeded. Please try again after '{wait}' seconds after "
                    "additional tokens are available. Refer to https://aka.ms/arm-throttling",
                    {**extra_headers, "Retry-After": str(wait)},
                )
        self.operations.settle()
        response = self.router.dispatch(request)
        if response is None:
            response = arm_error(
                404, "InvalidResourceType", f"The resource type could not be found for path '{request.path}'."
            )
        response.headers.update(extra_headers)
        for listener in self.on_answered:
            listener(request, response)
        return response

    def fault_response(self, status: int, retry_after: str | None, request: Request) -> Response:
        code = _ERROR_CODES.get(status, "Error")
        message = f"Injected fault: {status} {code} for {request.method} {request.path}."
        if status == 403:
            client = request.principal or "unknown"
            message = (
                f"The client '{client}' with object id '{client}' does not have authorization to perform "
                f"action '{rbac_action(request.method, request.path)}' over scope '{request.path}' or the "
                "scope is invalid. If access was recently granted, please refresh your credentials. (injected)"
            )
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return arm_error(status, code, message, headers)

    # -- helpers for resource providers ----------------------------------------------------
    def page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        size = self.settings.arm_page_size
        token = request.query_ci("$skipToken")
        try:
            start = int(base64.urlsafe_b64decode(token + "==").decode()) if token else 0
        except ValueError:
            return arm_error(400, "InvalidSkipToken", "The $skipToken is invalid.")
        payload: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            next_token = base64.urlsafe_b64encode(str(start + size).encode()).decode().rstrip("=")
            payload["nextLink"] = (
                f"https://{request.host}{request.path}?api-version="
                f"{request.query['api-version']}&$skipToken={next_token}"
            )
            if request.query_ci("$filter"):  # the next page is of the same filtered list
                payload["nextLink"] += "&$filter=" + quote(str(request.query_ci("$filter")))
        return Response.json(200, payload)

    def start_operation(
        self,
        request: Request,
        resource_id: str,
        namespace: str,
        location: str,
        apply: Callable[[], None],
        revert: Callable[[], None],
        *,
        operation: str = "",
    ) -> dict[str, str]:
        """Register an LRO and return the headers that announce it. `operation` names it where the
        provider registers a status type per operation (SQL: `serverKey` answers with
        `locations/{l}/serverKeyAzureAsyncOperation/{id}` and `Location` at
        `serverKeyOperationResults/{id}`, the actions its role grants)."""
        _, status_url = self._begin(request, resource_id, namespace, location, apply, revert, operation)
        headers = {"Azure-AsyncOperation": status_url, "Retry-After": str(self.settings.retry_after)}
        if operation:
            results = status_url.replace(
                f"/{operation}AzureAsyncOperation/", f"/{operation}OperationResults/"
            )
            headers["Location"] = results
        return headers

    def answer_write(
        self,
        request: Request,
        resource_id: str,
        namespace: str,
        location: str,
        apply: Callable[[], None],
        revert: Callable[[], None],
        *,
        shape: str,
        body: Callable[[], dict[str, Any]],
    ) -> Response:
        """A long-running write's answer in one of the shapes ARM's specs allow (LRO_SHAPES):
        `shape` is the resource provider's own; the `lroShapes` setting may name another for the
        namespace, so a test can run a kind's write over every shape its spec allows."""
        shape = self.settings.lro_shapes.get(namespace.lower(), shape)
        op, status_url = self._begin(request, resource_id, namespace, location, apply, revert)
        op.final = body
        retry = {"Retry-After": str(self.settings.retry_after)}
        results_path = (
            f"{resource_id}/operationresults/{op.id}"
            if namespace.lower() in RESOURCE_SCOPED_RESULTS
            else f"/subscriptions/{op.subscription}/providers/{namespace}/locations/{op.location}/operationResults/{op.id}"
        )
        location_url = f"https://{request.host}{results_path}?api-version={request.query['api-version']}"
        if shape == "async201":
            return Response.json(201, body(), {"Azure-AsyncOperation": status_url, **retry})
        if shape == "async202":
            return Response.empty(202, {"Azure-AsyncOperation": status_url, **retry})
        if shape == "both202":
            return Response.empty(
                202, {"Azure-AsyncOperation": status_url, "Location": location_url, **retry}
            )
        if shape == "location202":
            return Response.empty(202, {"Location": location_url, **retry})
        return Response.json(200, body())  # body200: the resource, provisioningState not yet terminal

    def _begin(
        self,
        request: Request,
        resource_id: str,
        namespace: str,
        location: str,
        apply: Callable[[], None],
        revert: Callable[[], None],
        operation: str = "",
    ) -> tuple[Operation, str]:
        match = arm_parts(resource_id)
        op = Operation(
            due=time.time() + self.settings.lro_seconds,
            id=f"{match['type'].lower()}-{uuid.uuid4()}-{next(self._op_ids)}",
            resource_id=resource_id,
            namespace=namespace,
            location=location.lower().replace(" ", ""),
            subscription=match["sub"],
            apply=apply,
            revert=revert,
            result=request.lro_result or "Succeeded",
        )
        self.operations.start(op)
        if namespace == "Microsoft.ContainerRegistry":
            status_path = f"{resource_id}/operationStatuses/{op.id}"
        else:
            segment = (
                f"{operation}AzureAsyncOperation"
                if operation
                else ASYNC_SEGMENTS.get(namespace.lower(), "operations")
            )
            scope = f"/subscriptions/{op.subscription}"
            if namespace.lower() in GROUP_SCOPED_STATUS:
                scope += f"/resourceGroups/{match['rg']}"
            status_path = f"{scope}/providers/{namespace}/locations/{op.location}/{segment}/{op.id}"
        return op, f"https://{request.host}{status_path}?api-version={request.query['api-version']}"

    def operation_result(self, request: Request, sub: str, op_id: str) -> Response:
        """A `Location` URL: 202 while the operation runs; once it succeeded 200 with the resource
        (204 when the write left no body to show); the error after a failure."""
        op = self.operations.get(op_id)
        if op is None or op.subscription.lower() != sub.lower():
            return arm_error(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        if op.status == "InProgress":
            location = f"https://{request.host}{request.path}?api-version={request.query['api-version']}"
            return Response.empty(202, {"Location": location, "Retry-After": str(self.settings.retry_after)})
        if op.status == "Succeeded":
            return Response.json(200, op.final()) if op.final else Response.empty(204)
        return arm_error(
            400, "OperationFailed", f"The operation on '{op.resource_id}' {op.status.lower()}. (injected)"
        )

    def operation_status(self, request: Request, sub: str, op_id: str) -> Response:
        op = self.operations.get(op_id)
        if op is None or op.subscription.lower() != sub.lower():
            return arm_error(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        body: dict[str, Any] = {
            "id": request.path,
            "name": op_id,
            "status": op.status,
            "startTime": iso(op.started),
        }
        headers = {}
        if op.status == "InProgress":
            headers["Retry-After"] = str(self.settings.retry_after)
        else:
            body["endTime"] = iso(op.ended or time.time())
        if op.status == "Failed":
            body["error"] = {
                "code": "OperationFailed",
                "message": f"The operation on '{op.resource_id}' failed. (injected)",
            }
        elif op.status == "Canceled":
            body["error"] = {"code": "OperationCanceled", "message": "The operation was canceled. (injected)"}
        return Response.json(200, body, headers)


def not_found(resource_type: str, name: str, group: str) -> Response:
    return arm_error(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def group_not_found(group: str) -> Response:
    return arm_error(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")


def json_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = request.json()
    except ValueError:
        return arm_error(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: not valid JSON.",
        )
    if not isinstance(body, dict):
        return arm_error(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def identity_block(
    world: World, user_assigned: list[str], system_principal: str | None
) -> dict[str, Any] | None:
    kinds = []
    block: dict[str, Any] = {}
    if system_principal:
        kinds.append("SystemAssigned")
        block["principalId"] = system_principal
        block["tenantId"] = "72f988bf-0000-4000-8000-00000000c0de"
    if user_assigned:
        kinds.append("UserAssigned")
        block["userAssignedIdentities"] = {
            i: {"principalId": world.identity(i).principal_id, "clientId": world.identity(i).client_id}
            for i in user_assigned
        }
    if not kinds:
        return None
    block["type"] = ", ".join(kinds)
    return block


# -- cross-service truth: what a resource provider checks when given a key -----------------
_KEY_URL = re.compile(
    r"^https://(?P<vault>[^./]+)\.(?P<suffix>(?:vault|managedhsm)\.[^/]+)/keys/(?P<name>[^/]+)"
    r"(?:/(?P<version>[^/]*))?/?$",
    re.IGNORECASE,
)


def key_problem(
    world: World,
    key_url: str | None,
    *,
    need_version: bool = False,
    identities: tuple[str, ...] = (),
    sizes: tuple[int, ...] | None = None,
) -> str | None:
    """Why a resource provider could not use this key with one of `identities` (resource ids or
    principal ids) (None: usable). Caller holds world.lock."""
    match = _KEY_URL.match(key_url or "")
    if not match:
        return f"'{key_url}' is not a valid Key Vault key identifier."
    if need_version and not match["version"]:
        return "A key version is required."
    vault = world.vault_for_host(f"{match['vault']}.{match['suffix']}")
    key = vault.key(match["name"]) if vault else None
    if vault is None or key is None:
        return f"The key '{key_url}' was not found."
    version = key.find(match["version"]) if match["version"] else key.latest()
    if version is None:
        return f"The key version '{key_url}' was not found."
    moment = now()
    if not version.enabled:
        return f"The key '{key_url}' is disabled."
    if version.exp is not None and version.exp <= moment:
        return f"The key '{key_url}' has expired."
    if version.nbf is not None and version.nbf > moment:
        return f"The key '{key_url}' is not yet valid."
    if key.kty not in ("RSA", "RSA-HSM"):
        return f"The key '{key_url}' has type {key.kty}; only RSA and RSA-HSM keys are supported."
    if sizes is not None and key.size not in sizes:
        return f"The key '{key_url}' is RSA {key.size}; the service supports RSA keys of {sizes} bits."
    missing = {"wrapKey", "unwrapKey"} - set(version.key_ops)
    if missing:
        return f"The key '{key_url}' does not permit {sorted(missing)}."
    if any(i.lower() in vault.denied_identities for i in identities if i):
        return f"The vault refused the identity for key '{key_url}' (Forbidden: no get/wrapKey/unwrapKey permission)."
    return None


def latest_version_url(world: World, key_url: str) -> str | None:
    """For a versionless key id: the versioned id a resource provider would follow today."""
    match = _KEY_URL.match(key_url or "")
    if not match:
        return None
    vault = world.vault_for_host(f"{match['vault']}.{match['suffix']}")
    key = vault.key(match["name"]) if vault else None
    if key is None:
        return None
    base = key_url.rstrip("/")
    if match["version"]:
        return base
    return f"{base}/{key.latest().version}"


_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def rbac_action(method: str, path: str) -> str:
    """The RBAC action ARM names in AuthorizationFailed: `Microsoft.Sql/servers/keys/write`;
    a POST is the operation itself, e.g. `Microsoft.Batch/batchAccounts/listKeys/action`."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return f"Microsoft.Resources/subscriptions/{_VERBS.get(method.upper(), 'action')}"
    rest = parts[len(lowered) - lowered[::-1].index("providers") :]
    namespace, names = (rest[0], rest[1:]) if rest else ("", [])
    types = names[0::2]
    if method.upper() == "POST" and len(names) % 2 == 1:  # …/{name}/{operation}
        return "/".join([namespace, *types, "action"])
    return "/".join([namespace, *types, _VERBS.get(method.upper(), "action")])
