"""Microsoft.Sql/servers with TDE protected by a customer-managed key (api-version 2023-08-01).

A server holds server keys (`servers/{s}/keys/{vault}_{key}_{version}`, `serverKeyType:
AzureKeyVault`, `uri`) and one encryption protector (`servers/{s}/encryptionProtector/current`)
naming the key that protects TDE. Both writes are long-running PUTs (202 + Azure-AsyncOperation +
Location). The server reaches the key with its primary user-assigned identity, or its
system-assigned one; SQL accepts RSA and RSA-HSM keys of 2048 or 3072 bits.
"""

from __future__ import annotations

from typing import Any

from .arm import ArmService, arm_error, not_found
from .cmk import ArmResourceRoutes, Refusals, id_part, identity_names, refusal
from .http import Request, Response
from .state import SqlServer

NAMESPACE = "Microsoft.Sql"
TYPE = "Microsoft.Sql/servers"
REFUSALS = Refusals("AzureKeyVaultRsaKeyNotSupported", "AzureKeyVaultMissingPermissions", (2048, 3072))


def server_key_name(key_url: str) -> str:
    """{vault}_{key}_{version}, the name SQL gives a Key Vault or Managed HSM key."""
    host, _, rest = key_url.split("//", 1)[-1].partition("/keys/")
    name, _, version = rest.partition("/")
    return f"{host.split('.', 1)[0]}_{name}_{version}"


class SqlServers(ArmResourceRoutes[SqlServer]):
    TYPE = TYPE

    def __init__(self, arm: ArmService) -> None:
        super().__init__(arm)
        add = arm.router.add
        add("GET", self.item + r"/encryptionProtector/current", self.get_protector)
        add("PUT", self.item + r"/encryptionProtector/current", self.put_protector)
        add("GET", self.item + r"/keys/(?P<key_name>[^/]+)", self.get_key)
        add("PUT", self.item + r"/keys/(?P<key_name>[^/]+)", self.put_key)

    def resources(self) -> dict[str, SqlServer]:
        return self.world.sql_servers

    def render(self, server: SqlServer) -> dict[str, Any]:
        name = id_part(server.id, "name")
        properties: dict[str, Any] = {
            "administratorLogin": "sqladmin",
            "version": "12.0",
            "state": "Ready",
            "fullyQualifiedDomainName": f"{name}.database.windows.net",
            "publicNetworkAccess": "Enabled",
            "minimalTlsVersion": "1.2",
        }
        if server.primary_identity:
            properties["primaryUserAssignedIdentityId"] = server.primary_identity
        if server.protector_key:
            properties["keyId"] = server.server_keys[server.protector_key]
        return self.envelope(server, properties, kind="v12.0")

    def render_key(self, server: SqlServer, key_name: str) -> dict[str, Any]:
        return {
            "id": f"{server.id}/keys/{key_name}",
            "name": key_name,
            "type": "Microsoft.Sql/servers/keys",
            "kind": "azurekeyvault",
            "location": server.location,
            "properties": {"serverKeyType": "AzureKeyVault", "uri": server.server_keys[key_name]},
        }

    def render_protector(self, server: SqlServer) -> dict[str, Any]:
        properties: dict[str, Any] = {"serverKeyName": "ServiceManaged", "serverKeyType": "ServiceManaged"}
        if server.protector_key:
            properties = {
                "serverKeyName": server.protector_key,
                "serverKeyType": "AzureKeyVault",
                "uri": server.server_keys[server.protector_key],
                "autoRotationEnabled": server.auto_rotation,
            }
        return {
            "id": f"{server.id}/encryptionProtector/current",
            "name": "current",
            "type": "Microsoft.Sql/servers/encryptionProtector",
            "kind": "azurekeyvault" if server.protector_key else "servicemanaged",
            "location": server.location,
            "properties": properties,
        }

    def get_protector(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            server = self.find(sub, group, name)
            if server is None:
                return not_found(TYPE, name, group)
            return Response.json(200, self.render_protector(server))

    def get_key(self, request: Request, sub: str, group: str, name: str, key_name: str) -> Response:
        with self.world.lock:
            server = self.find(sub, group, name)
            if server is None:
                return not_found(TYPE, name, group)
            if key_name not in server.server_keys:
                return arm_error(
                    404, "ServerKeyNotFound", f"The requested server key '{key_name}' was not found."
                )
            return Response.json(200, self.render_key(server, key_name))

    def put_key(self, request: Request, sub: str, group: str, name: str, key_name: str) -> Response:
        with self.world.lock:
            found = self.target(request, sub, group, name)
            if isinstance(found, Response):
                return found
            server, body = found
            properties = body.get("properties") or {}
            uri = str(properties.get("uri") or "")
            if properties.get("serverKeyType") != "AzureKeyVault" or server_key_name(uri) != key_name:
                return arm_error(
                    400,
                    "InvalidKeyName",
                    f"An invalid value was given for the server key name '{key_name}': expected "
                    "<vault>_<key>_<version> of an AzureKeyVault key uri.",
                )
            refused = self._refusal(server, name, uri)
            if refused is not None:
                return refused

            def apply() -> None:
                server.server_keys[key_name] = uri

            return self._accepted(request, f"{server.id}/keys/{key_name}", server, apply, "serverKey")

    def put_protector(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            found = self.target(request, sub, group, name)
            if isinstance(found, Response):
                return found
            server, body = found
            properties = body.get("properties") or {}
            key_name = properties.get("serverKeyName")
            if properties.get("serverKeyType") != "AzureKeyVault" or key_name not in server.server_keys:
                return arm_error(
                    409, "ServerKeyDoesNotExists", f"The server key '{key_name}' does not exist."
                )
            refused = self._refusal(server, name, server.server_keys[key_name])
            if refused is not None:
                return refused
            auto = bool(properties.get("autoRotationEnabled", server.auto_rotation))

            def apply() -> None:
                server.protector_key, server.auto_rotation = key_name, auto

            protector = f"{server.id}/encryptionProtector/current"
            return self._accepted(request, protector, server, apply, "encryptionProtector")

    def _refusal(self, server: SqlServer, name: str, uri: str) -> Response | None:
        if server.primary_identity:
            names = identity_names(self.world, [server.primary_identity], None)
        elif server.system_principal:
            names = identity_names(self.world, [], server.system_principal)
        else:
            return arm_error(
                400, "AzureKeyVaultNoServerIdentity", "The server identity is not correctly configured."
            )
        return refusal(self.world, uri, names, REFUSALS, f"Server '{name}'")

    def _accepted(
        self, request: Request, resource_id: str, server: SqlServer, apply: Any, operation: str
    ) -> Response:
        # SQL registers a status type per operation (`locations/serverKeyAzureAsyncOperation`,
        # `serverKeyOperationResults`, the same for `encryptionProtector`): the role's actions.
        headers = self.arm.start_operation(
            request, resource_id, NAMESPACE, server.location, apply, lambda: None, operation=operation
        )
        return Response.empty(202, headers)
