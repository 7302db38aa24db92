"""Azure SQL logical servers whose TDE protector is a customer-managed key.

The key is named by the server's encryption protector (`servers/{s}/encryptionProtector/current`:
`serverKeyType: AzureKeyVault`, `serverKeyName`, `uri`); `autoRotationEnabled: true` means SQL
follows new versions itself. A new version takes two long-running PUTs in order: add the server
key `{vault}_{key}_{version}` for it, then point the protector at that key. The old server key
stays: it still decrypts backups and log files written under it. The server reaches the key with
its primary user-assigned identity (`primaryUserAssignedIdentityId`) or, without one, its
system-assigned identity.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import batched
from typing import TYPE_CHECKING, Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import ApplyContext
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import SQL_SERVER, InvalidId, KeyRef, ResourceId, parse_key_id

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

API_VERSION = "2023-08-01"
KIND = "sqlserver"
PROTECTOR = "encryptionProtector/current"
PROTECTOR_READS = 8  # parallel protector GETs while listing; ARM allows 250 reads at once per subscription
# SQL TDE accepts RSA and RSA-HSM keys of 2048 or 3072 bits (AzureKeyVaultRsaKeyNotSupported).
ACCEPTED_KEYS = {"RSA": (2048, 3072), "RSA-HSM": (2048, 3072)}
_SERVER_KEY_NAME = re.compile(r"^[a-z0-9-]{3,24}_[0-9a-zA-Z-]{1,127}_[0-9a-f]{32}\Z")
# Error code (lower case) -> what a person should do (codes from the encryption protector API);
# "" matches any other 400 from the service.
REMEDIATION = {
    "azurekeyvaultmissingpermissions": "The server's identity cannot use the key: grant it 'Key Vault Crypto "
    "Service Encryption User' on the key (or get, wrapKey, unwrapKey in access policies).",
    "umimissingakvpermissions": "The server's primary user-assigned identity cannot use the key: grant it 'Key "
    "Vault Crypto Service Encryption User' on the key.",
    "azurekeyvaultnoserveridentity": "The server has no identity for the key: assign one and set it as the "
    "primary user-assigned identity, or turn on its system-assigned identity.",
    "azurekeyvaultrsakeynotsupported": "SQL TDE accepts only RSA or RSA-HSM keys of 2048 or 3072 bits: create "
    "the new version with a supported size.",
    "azurekeyvaultkeydisabled": "The key version is disabled: enable it or create a new version.",
    "": "The SQL server could not use the key for TDE; see "
    "https://learn.microsoft.com/azure/azure-sql/database/transparent-data-encryption-byok-overview.",
}


def server_key_name(key: KeyRef) -> str:
    """SQL's name for a server key from Key Vault or Managed HSM: {vault}_{key}_{version}."""
    name = f"{key.vault_name}_{key.name}_{key.version}"
    if not _SERVER_KEY_NAME.match(name):
        raise InvalidId(f"server key name {name!r}: expected <vault>_<key>_<32 hex version>")
    return name


def to_consumer(server: Mapping[str, Any], protector: Mapping[str, Any] | None) -> Consumer | None:
    facts = a.properties(protector or {})
    resource_id = a.resource_id_of(server, SQL_SERVER)
    if str(facts.get("serverKeyType", "")).lower() != "azurekeyvault" or not facts.get("uri"):
        return None
    try:
        key = parse_key_id(facts["uri"])
    except InvalidId:
        return None
    if resource_id is None:
        return None
    identity = a.identity_fact(server, a.properties(server).get("primaryUserAssignedIdentityId"))
    auto = bool(facts.get("autoRotationEnabled"))
    extra = {"serverKeyName": facts.get("serverKeyName"), "autoRotationEnabled": auto}
    return a.consumer(
        KIND, resource_id, server, key, identity, follows=auto or key.version is None, extra=extra
    )


class SqlServers(a.ArmTargetKind):
    """Two reads per consumer (the server, then its protector), so it lists and reads its own way."""

    kind = KIND
    remediation = REMEDIATION
    resource_type = SQL_SERVER
    arm_actions = (  # two long-running PUTs: the server key, then the protector
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/keys/read",
        "Microsoft.Sql/servers/keys/write",
        "Microsoft.Sql/servers/encryptionProtector/read",
        "Microsoft.Sql/servers/encryptionProtector/write",
        "Microsoft.Sql/locations/serverKeyAzureAsyncOperation/read",
        "Microsoft.Sql/locations/serverKeyOperationResults/read",
        "Microsoft.Sql/locations/encryptionProtectorAzureAsyncOperation/read",
        "Microsoft.Sql/locations/encryptionProtectorOperationResults/read",
    )
    api_version = API_VERSION
    from_rows = False  # a server's row does not name its protector's key
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("SQL TDE", ACCEPTED_KEYS),)

    def with_protector(self, clients: Clients, server: Mapping[str, Any]) -> Consumer | None:
        # One more GET per server: the server body does not say which key protects it.
        protector = clients.arm().get(f"{server.get('id', '')}/{PROTECTOR}", API_VERSION)
        return to_consumer(server, protector)

    def read_all(self, clients: Clients, resource_id: ResourceId) -> Sequence[Consumer]:
        server = clients.arm().get(str(resource_id), self.api_version)
        return a.one(self.with_protector(clients, server)) if server is not None else []

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer]:
        """Servers as listed, their protectors read in parallel in batches (one GET per server)."""
        servers = clients.arm().list_by_subscription(subscription, self.resource_type, self.api_version)
        with ThreadPoolExecutor(max_workers=PROTECTOR_READS, thread_name_prefix="sql-protector") as pool:
            for batch in batched(servers, PROTECTOR_READS * 4):  # strict= is 3.13-only
                for consumer in pool.map(lambda server: self.with_protector(clients, server), batch):
                    if consumer is not None:
                        yield consumer

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        arm = clients.arm()
        server = str(consumer.resource_id)
        name = server_key_name(to_key)
        existing = arm.get(f"{server}/keys/{name}", API_VERSION)
        if ((existing or {}).get("properties") or {}).get("uri", "").lower() != to_key.id.lower():
            key_body = {"properties": {"serverKeyType": "AzureKeyVault", "uri": to_key.id}}
            arm.write("PUT", f"{server}/keys/{name}", API_VERSION, key_body)
        protector_body = {
            "properties": {
                "serverKeyType": "AzureKeyVault",
                "serverKeyName": name,
                "autoRotationEnabled": bool(consumer.extra.get("autoRotationEnabled")),
            }
        }
        # The poller ends with a GET of the protector: its `uri` is the server key it now points at.
        protector = arm.write("PUT", f"{server}/{PROTECTOR}", API_VERSION, protector_body)
        resource = arm.get(server, API_VERSION)
        return None if resource is None else to_consumer(resource, protector)
