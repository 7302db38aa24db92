"""The emulated estate: vaults with keys and versions, identities, registries, Batch accounts
and container groups. Plain dataclasses guarded by one lock; the services read and change
them, the scenario module loads and dumps them.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

RSA_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
EC_OPS = ["sign", "verify"]

ARM_ID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"(?P<provider>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)",
    re.IGNORECASE,
)


def arm_parts(resource_id: str) -> re.Match[str]:
    """The named parts of an ARM id that the state already validated."""
    match = ARM_ID.match(resource_id)
    if match is None:
        raise ValueError(f"not an ARM resource id: {resource_id}")
    return match


def now() -> int:
    return int(time.time())


def new_version_id() -> str:
    return uuid.uuid4().hex


def stable_uuid(seed: str) -> str:
    """A uuid derived from a resource id, so generated identities are the same on every load."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed.lower()))


@dataclass
class KeyVersion:
    version: str
    enabled: bool
    created: int
    updated: int
    nbf: int | None
    exp: int | None
    key_ops: list[str]
    tags: dict[str, str] = field(default_factory=dict)
    public: dict[str, str] = field(default_factory=dict)  # JWK public members only


@dataclass
class Key:
    name: str
    kty: str
    size: int | None
    crv: str | None
    versions: list[KeyVersion]
    rotation_policy: dict[str, Any] | None = None  # wire shape: lifetimeActions, attributes
    tags: dict[str, str] = field(default_factory=dict)

    def latest(self) -> KeyVersion:
        """The key's current version: the one created last (ties: the one added last)."""
        return max(enumerate(self.versions), key=lambda pair: (pair[1].created, pair[0]))[1]

    def find(self, version: str) -> KeyVersion | None:
        for candidate in self.versions:
            if candidate.version.lower() == version.lower():
                return candidate
        return None


@dataclass
class Vault:
    name: str
    recovery_level: str = "Recoverable+Purgeable"
    recoverable_days: int | None = 90
    keys: dict[str, Key] = field(default_factory=dict)  # lower-case name -> key
    # Identities (resource ids or principal ids, lower case) the vault refuses: their role
    # assignment or access policy was removed. ARM cannot see this; the resource provider can.
    denied_identities: set[str] = field(default_factory=set)

    def key(self, name: str) -> Key | None:
        return self.keys.get(name.lower())


@dataclass
class Identity:
    id: str
    client_id: str
    principal_id: str


@dataclass
class Registry:
    id: str
    location: str
    key_id: str | None
    encryption_identity: str | None  # identity resource id, or "SystemAssigned"
    identities: list[str]
    tags: dict[str, str]
    system_principal: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # other writable properties
    created: int = field(default_factory=now)
    last_key_rotation: int | None = None
    provisioning_state: str = "Succeeded"


@dataclass
class BatchAccount:
    id: str
    location: str
    key_id: str | None
    identities: list[str]
    tags: dict[str, str]
    system_principal: str | None = None
    provisioning_state: str = "Succeeded"


@dataclass
class ContainerGroup:
    id: str
    location: str
    encryption: dict[str, str] | None  # vaultBaseUrl, keyName, keyVersion, identity
    identities: list[str]
    spec: dict[str, Any]  # ARM properties other than encryption, secure values included
    tags: dict[str, str]
    provisioning_state: str = "Succeeded"
    # Top-level members beyond the envelope (`zones`, ...), kept as they came like the
    # properties this emulator does not model: a client that drops one shows it.
    top: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyedResource:
    """A resource of the kinds served by emulator/cmk.py KeyedProvider (Log Analytics and Data Explorer
    clusters, Event Hubs and Service Bus namespaces, Cosmos DB accounts, AKS clusters): the key
    ids it holds (versionless when it follows the key), the identity it names for them."""

    id: str
    type: str  # ARM type, e.g. "Microsoft.Kusto/clusters"
    location: str
    key_ids: list[str]  # one for most kinds; a namespace's keyVaultProperties[] holds several
    identities: list[str]  # user-assigned identity resource ids
    tags: dict[str, str]
    key_identity: str | None = None  # the user-assigned identity named for the key; None: system
    system_principal: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific, e.g. keyVaultNetworkAccess
    provisioning_state: str = "Succeeded"


@dataclass
class ArmDocument:
    """A resource written by a PUT of its whole document (Data Factory factories, Databricks
    workspaces, emulator/documents.py): the document as last put, every field kept whether the
    emulator models it or not, and the entity tag a PUT's If-Match must name."""

    id: str
    type: str
    location: str
    tags: dict[str, str]
    identities: list[str]  # user-assigned identity resource ids
    document: dict[str, Any]  # everything else as put: properties, sku, ...
    etag: str
    system_principal: str | None = None
    provisioning_state: str = "Succeeded"


@dataclass
class StorageAccount:
    id: str
    location: str
    key_id: str | None  # https://<vault>/keys/<name>[/<version>]; None: Microsoft-managed keys
    encryption_identity: str | None  # identity resource id; None: the system-assigned identity
    identities: list[str]
    tags: dict[str, str]
    system_principal: str | None = None
    last_key_rotation: int | None = None
    provisioning_state: str = "Succeeded"


@dataclass
class DiskEncryptionSet:
    id: str
    location: str
    key_id: str  # always versioned in Azure unless auto-rotation is on
    source_vault: str | None  # vault resource id (Key Vault keys only)
    rotation_to_latest: bool
    identities: list[str]
    tags: dict[str, str]
    system_principal: str | None = None
    last_key_rotation: int | None = None
    provisioning_state: str = "Succeeded"


@dataclass
class SqlServer:
    id: str
    location: str
    protector_key: str | None  # server key name the TDE protector points at; None: service-managed
    auto_rotation: bool
    primary_identity: str | None  # primaryUserAssignedIdentityId
    identities: list[str]
    tags: dict[str, str]
    server_keys: dict[str, str] = field(default_factory=dict)  # server key name -> key uri
    system_principal: str | None = None


class World:
    """All emulated state; every access goes through ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.vaults: dict[str, Vault] = {}
        self.identities: dict[str, Identity] = {}
        self.registries: dict[str, Registry] = {}
        self.batch_accounts: dict[str, BatchAccount] = {}
        self.container_groups: dict[str, ContainerGroup] = {}
        self.keyed: dict[str, KeyedResource] = {}  # lower-case id -> resource (emulator/cmk.py KeyedProvider)
        self.managed_hsms: dict[str, Vault] = {}  # served as <name>.managedhsm.azure.net
        self.storage_accounts: dict[str, StorageAccount] = {}
        self.disk_encryption_sets: dict[str, DiskEncryptionSet] = {}
        self.sql_servers: dict[str, SqlServer] = {}
        self.documents: dict[str, ArmDocument] = {}  # lower-case id -> resource (emulator/documents.py)
        self.subscriptions: set[str] = set()
        self.resource_groups: set[tuple[str, str]] = set()  # (subscription, group), lower case

    def identity(self, resource_id: str) -> Identity:
        """The identity with this resource id, created on first use with stable ids."""
        known = self.identities.get(resource_id.lower())
        if known is None:
            known = Identity(
                resource_id, stable_uuid("client:" + resource_id), stable_uuid("principal:" + resource_id)
            )
            self.identities[resource_id.lower()] = known
        return known

    def vault_for_host(self, host: str) -> Vault | None:
        name, _, suffix = host.lower().partition(".")
        if suffix.startswith("managedhsm."):
            return self.managed_hsms.get(name)
        return self.vaults.get(name)


def random_public_jwk(kty: str, size: int | None, crv: str | None) -> dict[str, str]:
    """Public JWK members of the right sizes. Random: the emulator performs no cryptography
    and never holds private key material."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    if kty.startswith("EC"):
        length = {"P-256": 32, "P-256K": 32, "P-384": 48, "P-521": 66}.get(crv or "P-256", 32)
        return {
            "crv": crv or "P-256",
            "x": b64(secrets.token_bytes(length)),
            "y": b64(secrets.token_bytes(length)),
        }
    modulus = bytearray(secrets.token_bytes((size or 2048) // 8))
    modulus[0] |= 0x80
    return {"n": b64(bytes(modulus)), "e": "AQAB"}
