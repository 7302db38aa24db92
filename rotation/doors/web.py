"""The HTTP routes' values and input checks: the request and answer as the routes see them, the
error that becomes an answer, the caller's roles and name, and the checks every body, id, flag and
time passes before it reaches Key Vault, ARM or a Table query (rotation/doors/api.py routes them).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotation.azure.kinds import accepted_types
from rotation.model.errors import RotationError
from rotation.model.ids import InvalidId, KeyRef, parse_key_id, parse_resource_id
from rotation.run.gather import Unreachable
from rotation.service import Service
from rotation.storage.queue import unique_targets

log = logging.getLogger("rotation.api")
MAX_BODY = 64 * 1024
MAX_REPLAY_ITEMS = 500
MAX_TARGETS = 1000
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
ASCII_DIGITS = re.compile(r"[0-9]{1,12}")  # str.isdigit() also takes '²' and '٣'
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


def read_body(request: ApiRequest, allowed: set[str], required: set[str]) -> dict[str, Any]:
    declared = request.header("Content-Length")
    declared_size = int(declared) if declared and ASCII_DIGITS.fullmatch(declared) else 0
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


def read_key(service: Service, value: Any, field_name: str = "keyId") -> KeyRef:
    if not isinstance(value, str):
        raise ApiError(400, "InvalidKeyId", f"{field_name} must be a key URL string")
    try:
        key = parse_key_id(value)
    except InvalidId as exc:
        raise ApiError(400, "InvalidKeyId", f"{field_name}: {exc}") from None
    if not service.settings.vault_allowed(key.vault_host):
        raise ApiError(403, "VaultNotAllowed", f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    return key


def read_targets(service: Service, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_TARGETS:
        raise ApiError(400, "InvalidTargets", f"targets must be a list of 1-{MAX_TARGETS} ARM resource ids")
    try:
        targets = unique_targets(value, accepted_types())
    except InvalidId as exc:
        raise ApiError(400, "InvalidTargets", str(exc)) from None
    for target in targets:
        subscription = parse_resource_id(target, None).subscription  # its type checked above
        if subscription not in service.settings.subscriptions:
            raise ApiError(
                403,
                "TargetNotAllowed",
                f"{target} is in subscription {subscription}, which is not in ROTATION_SUBSCRIPTIONS",
            )
    return targets


def read_flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, "InvalidBody", f"{name} must be true or false")
    return value


def base_url(request: ApiRequest) -> str:
    match = re.match(r"^(https?://[^/]+)", request.url)
    return match.group(1) if match else ""


def within_replay_limit(items: list[Any]) -> list[Any]:
    if len(items) > MAX_REPLAY_ITEMS:
        raise ApiError(
            400,
            "TooManyItems",
            f"{len(items)} items match; narrow the selection to at most "
            f"{MAX_REPLAY_ITEMS} (or use `rotation replay`)",
        )
    return items


def unavailable(code: str, message: str) -> ApiError:
    error = ApiError(503, code, message)
    error.headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return error


def read_error(exc: Unreachable) -> ApiError:
    """Key Vault could not be read: 404 when the key does not exist, else 502 (a gateway problem)."""
    if exc.info.status == 404:
        return ApiError(404, "KeyNotFound", str(exc))
    return ApiError(502, "Unreachable", str(exc))


def read_time(value: str | None, name: str) -> datetime | None:
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
