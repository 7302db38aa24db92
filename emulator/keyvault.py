"""Key Vault keys data plane, as azure-keyvault-keys 4.11 sees it (api-version 2025-07-01, 7.x).

Every route needs a bearer token for the vault audience; without one the answer is Key Vault's
401 challenge (``WWW-Authenticate: Bearer authorization="...", resource="..."``), which the SDK
verifies against the vault's hostname. Answers never carry private key material.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from .http import Request, Response, Router
from .identity import TENANT, TokenIssuer
from .settings import Settings
from .state import Key, KeyVersion, Vault, World, new_version_id, now, random_public_jwk

# 7.6-preview.*: what `az keyvault` (azure-cli 2.91) sends; Key Vault publishes them (same key shapes)
API_VERSIONS = {
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6-preview.1",
    "7.6-preview.2",
    "7.6",
    "2025-07-01",
}
VAULT_SUFFIXES = {
    "vault.azure.net": "https://vault.azure.net",
    "vault.azure.cn": "https://vault.azure.cn",
    "vault.usgovcloudapi.net": "https://vault.usgovcloudapi.net",
    # Managed HSM serves the same keys API; its tokens and challenge use its own audience.
    "managedhsm.azure.net": "https://managedhsm.azure.net",
    "managedhsm.azure.cn": "https://managedhsm.azure.cn",
    "managedhsm.usgovcloudapi.net": "https://managedhsm.usgovcloudapi.net",
}
_DURATION = re.compile(r"^P(?:(?P<y>\d+)Y)?(?:(?P<m>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?$")
_NAME = r"(?P<name>[0-9a-zA-Z-]{1,127})"
_VERSION = r"(?P<version>[^/]+)"
DEFAULT_NOTIFY = {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}


def vault_audience(host: str) -> str | None:
    for suffix, audience in VAULT_SUFFIXES.items():
        if host.endswith("." + suffix):
            return audience
    return None


def iso_duration_seconds(text: str) -> int:
    """Seconds in an ISO 8601 date duration as Key Vault uses them (P90D, P2Y, P1Y6M)."""
    match = _DURATION.match(text or "")
    if not match or text == "P":
        raise ValueError(f"'{text}' is not an ISO 8601 duration like P90D")
    years, months, weeks, days = (int(match[g] or 0) for g in ("y", "m", "w", "d"))
    return ((years * 365) + (months * 30) + (weeks * 7) + days) * 86400


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}}, headers)


def _not_found(name: str, version: str | None = None) -> Response:
    what = f"{name}/{version}" if version else name
    return _error(
        404,
        "KeyNotFound",
        f"A key with (name/id) {what} was not found in this key vault. If you recently deleted this "
        "key you may be able to recover it using the correct recovery command. For help resolving "
        "this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


class KeyVaultService:
    def __init__(self, world: World, tokens: TokenIssuer, settings: Settings) -> None:
        self.world = world
        self.tokens = tokens
        self.settings = settings
        # Called under the world lock with (vault, key, version) when a version is made.
        self.on_new_version: Callable[[Vault, Key, KeyVersion], None] = lambda *_: None
        self.router = Router()
        add = self.router.add
        add("GET", r"/keys/?", self.list_keys)
        add("POST", rf"/keys/{_NAME}/create/?", self.create_key)
        add("POST", rf"/keys/{_NAME}/rotate/?", self.rotate_key)
        add("GET", rf"/keys/{_NAME}/versions/?", self.list_versions)
        add("GET", rf"/keys/{_NAME}/rotationpolicy/?", self.get_policy)
        add("PUT", rf"/keys/{_NAME}/rotationpolicy/?", self.put_policy)
        add("GET", rf"/keys/{_NAME}/?", self.get_key)
        add("PATCH", rf"/keys/{_NAME}/?", self.update_key)
        add("GET", rf"/keys/{_NAME}/{_VERSION}/?", self.get_key)
        add("PATCH", rf"/keys/{_NAME}/{_VERSION}/?", self.update_key)

    # -- entry ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        audience = vault_audience(request.host)
        if self.tokens.check(request, {audience} if audience else set()) is None:
            message = (
                "AKV10000: Request is missing a Bearer or PoP token."
                if "authorization" not in request.headers
                else "AKV10022: Invalid audience or token."
            )
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="{audience}"'
            )
            return _error(401, "Unauthorized", message, {"WWW-Authenticate": challenge})
        api_version = request.query.get("api-version")
        if api_version not in API_VERSIONS:
            return _error(
                400,
                "BadParameter",
                f"The specified version ({api_version}) is not recognized. Consider using the latest "
                "supported version (2025-07-01).",
            )
        with self.world.lock:
            vault = self.world.vault_for_host(request.host)
            if vault is None:
                return _error(404, "VaultNotFound", f"Vault for host {request.host} does not exist")
            request.context["vault"] = vault
            response = self.router.dispatch(request)
        if response is None:
            return _error(400, "BadParameter", f"Unknown route {request.method} {request.path}")
        return response

    # -- rendering -------------------------------------------------------------------------
    @staticmethod
    def _base(request: Request) -> str:
        return f"https://{request.host}"

    @staticmethod
    def _attributes(vault: Vault, version: KeyVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": vault.recovery_level,
            "exportable": False,
        }
        if vault.recoverable_days:
            attributes["recoverableDays"] = vault.recoverable_days
        if version.nbf is not None:
            attributes["nbf"] = version.nbf
        if version.exp is not None:
            attributes["exp"] = version.exp
        return attributes

    def _bundle(self, request: Request, key: Key, version: KeyVersion) -> dict[str, Any]:
        vault: Vault = _vault(request)
        bundle: dict[str, Any] = {
            "key": {
                "kid": f"{self._base(request)}/keys/{key.name}/{version.version}",
                "kty": key.kty,
                "key_ops": list(version.key_ops),
                **version.public,
            },
            "attributes": self._attributes(vault, version),
        }
        if version.tags:
            bundle["tags"] = dict(version.tags)
        return bundle

    def _page(self, request: Request, items: list[dict[str, Any]], path: str) -> Response:
        try:
            limit = self.settings.keyvault_page_size
            size = max(1, min(limit, int(request.query.get("maxresults") or limit)))
            start = int(base64.urlsafe_b64decode(request.query.get("$skiptoken", "") + "==").decode() or 0)
        except ValueError:
            return _error(400, "BadParameter", "Invalid maxresults or $skiptoken")
        payload: dict[str, Any] = {"value": items[start : start + size], "nextLink": None}
        if start + size < len(items):
            token = base64.urlsafe_b64encode(str(start + size).encode()).decode().rstrip("=")
            payload["nextLink"] = (
                f"{self._base(request)}{path}?api-version={request.query['api-version']}"
                f"&$skiptoken={token}&maxresults={size}"
            )
        return Response.json(200, payload)

    # -- keys ----------------------------------------------------------------------------
    def list_keys(self, request: Request) -> Response:
        vault: Vault = _vault(request)
        items = [self._listed(request, vault, key.name, key.latest()) for key in vault.keys.values()]
        return self._page(request, items, "/keys")

    def get_key(self, request: Request, name: str, version: str | None = None) -> Response:
        key = _vault(request).key(name)
        if key is None:
            return _not_found(name)
        found = key.latest() if not version else key.find(version)
        if found is None:
            return _not_found(name, version)
        return Response.json(200, self._bundle(request, key, found))

    def list_versions(self, request: Request, name: str) -> Response:
        vault: Vault = _vault(request)
        key = vault.key(name)
        if key is None:
            return _not_found(name)
        items = [self._listed(request, vault, f"{key.name}/{v.version}", v) for v in key.versions]
        return self._page(request, items, f"/keys/{key.name}/versions")

    def _listed(self, request: Request, vault: Vault, kid_path: str, version: KeyVersion) -> dict[str, Any]:
        """A key or version as a list shows it: kid, attributes, tags (no key material)."""
        item: dict[str, Any] = {
            "kid": f"{self._base(request)}/keys/{kid_path}",
            "attributes": self._attributes(vault, version),
        }
        if version.tags:
            item["tags"] = dict(version.tags)
        return item

    def create_key(self, request: Request, name: str) -> Response:
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        kty = body.get("kty")
        if kty not in {"RSA", "RSA-HSM", "EC", "EC-HSM"}:
            return _error(400, "BadParameter", f"Invalid kty '{kty}'. Supported: RSA, RSA-HSM, EC, EC-HSM")
        is_ec = kty.startswith("EC")
        size = None if is_ec else int(body.get("key_size") or 2048)
        if size is not None and size not in (2048, 3072, 4096):
            return _error(400, "BadParameter", "RSA key_size must be 2048, 3072 or 4096")
        crv = (body.get("crv") or "P-256") if is_ec else None
        attributes = body.get("attributes") or {}
        vault: Vault = _vault(request)
        key = vault.key(name)
        default_ops = (
            ["sign", "verify"] if is_ec else ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
        )
        created = now()
        version = KeyVersion(
            version=new_version_id(),
            enabled=bool(attributes.get("enabled", True)),
            created=created,
            updated=created,
            nbf=attributes.get("nbf"),
            exp=attributes.get("exp"),
            key_ops=list(body.get("key_ops") or default_ops),
            tags=dict(body.get("tags") or {}),
            public=random_public_jwk(kty, size, crv),
        )
        if key is None:
            key = Key(name=name, kty=kty, size=size, crv=crv, versions=[])
            vault.keys[name.lower()] = key
        key.kty, key.size, key.crv = kty, size, crv
        key.versions.append(version)
        self.on_new_version(vault, key, version)
        return Response.json(200, self._bundle(request, key, version))

    def rotate_key(self, request: Request, name: str) -> Response:
        key = _vault(request).key(name)
        if key is None:
            return _not_found(name)
        latest = key.latest()
        created = now()
        expiry = ((key.rotation_policy or {}).get("attributes") or {}).get("expiryTime")
        version = KeyVersion(
            version=new_version_id(),
            enabled=True,
            created=created,
            updated=created,
            nbf=None,
            exp=created + iso_duration_seconds(expiry) if expiry else None,
            key_ops=list(latest.key_ops),
            tags=dict(latest.tags),
            public=random_public_jwk(key.kty, key.size, key.crv),
        )
        key.versions.append(version)
        self.on_new_version(_vault(request), key, version)
        return Response.json(200, self._bundle(request, key, version))

    def update_key(self, request: Request, name: str, version: str | None = None) -> Response:
        key = _vault(request).key(name)
        if key is None:
            return _not_found(name)
        target = key.latest() if not version else key.find(version)
        if target is None:
            return _not_found(name, version)
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        attributes = body.get("attributes") or {}
        nbf = attributes.get("nbf", target.nbf)
        exp = attributes.get("exp", target.exp)
        if nbf is not None and exp is not None and exp <= nbf:
            return _error(400, "BadParameter", "Property 'exp' must be later than 'nbf'")
        if "enabled" in attributes and attributes["enabled"] is not None:
            target.enabled = bool(attributes["enabled"])
        target.nbf, target.exp = nbf, exp
        if body.get("key_ops") is not None:
            target.key_ops = list(body["key_ops"])
        if body.get("tags") is not None:
            target.tags = dict(body["tags"])
        target.updated = now()
        return Response.json(200, self._bundle(request, key, target))

    # -- rotation policy -------------------------------------------------------------------
    def _policy_body(self, request: Request, key: Key) -> dict[str, Any]:
        policy = key.rotation_policy or {"lifetimeActions": [dict(DEFAULT_NOTIFY)], "attributes": {}}
        return {
            "id": f"{self._base(request)}/keys/{key.name}/rotationpolicy",
            "lifetimeActions": policy.get("lifetimeActions") or [],
            "attributes": dict(policy.get("attributes") or {}),
        }

    def get_policy(self, request: Request, name: str) -> Response:
        key = _vault(request).key(name)
        if key is None:
            return _not_found(name)
        return Response.json(200, self._policy_body(request, key))

    def put_policy(self, request: Request, name: str) -> Response:
        key = _vault(request).key(name)
        if key is None:
            return _not_found(name)
        body = _json_object(request)
        if isinstance(body, Response):
            return body
        try:
            actions = _validate_actions(body.get("lifetimeActions") or [])
            expiry = (body.get("attributes") or {}).get("expiryTime")
            if expiry is not None and iso_duration_seconds(expiry) < 28 * 86400:
                raise ValueError("expiryTime must be at least P28D")
        except ValueError as exc:
            return _error(400, "BadParameter", str(exc))
        if not any(a["action"]["type"] == "Notify" for a in actions):
            actions.append({"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}})
        stamp = now()
        created = ((key.rotation_policy or {}).get("attributes") or {}).get("created", stamp)
        attributes: dict[str, Any] = {"created": created, "updated": stamp}
        if expiry is not None:
            attributes["expiryTime"] = expiry
        key.rotation_policy = {"lifetimeActions": actions, "attributes": attributes}
        return Response.json(200, self._policy_body(request, key))


def _vault(request: Request) -> Vault:
    return request.context["vault"]


def _json_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = request.json() or {}
    except ValueError:
        return _error(400, "BadParameter", "The request body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "BadParameter", "The request body must be a JSON object")
    return body


def _validate_actions(actions: Any) -> list[dict[str, Any]]:
    if not isinstance(actions, list):
        raise ValueError("lifetimeActions must be a list")
    valid = []
    for action in actions:
        kind = str(((action or {}).get("action") or {}).get("type", "")).capitalize()
        if kind not in ("Rotate", "Notify"):
            raise ValueError(f"Unknown lifetime action type '{kind}'; use Rotate or Notify")
        trigger = (action or {}).get("trigger") or {}
        present = [k for k in ("timeAfterCreate", "timeBeforeExpiry") if trigger.get(k)]
        if len(present) != 1:
            raise ValueError("A lifetime action trigger has exactly one of timeAfterCreate, timeBeforeExpiry")
        if kind == "Notify" and present[0] != "timeBeforeExpiry":
            raise ValueError("A Notify action can only be triggered by timeBeforeExpiry")
        iso_duration_seconds(trigger[present[0]])
        valid.append({"trigger": {present[0]: trigger[present[0]]}, "action": {"type": kind}})
    return valid
