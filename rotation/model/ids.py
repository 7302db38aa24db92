"""Key ids, vault URLs and ARM resource ids: strict parsing, so nothing unvalidated ever
reaches a Key Vault URL, an ARM path or a Table query."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from rotation.model.errors import RotationError

# A DNS host name (vault and Managed HSM hosts; settings and filters check theirs with it too).
HOST_NAME = re.compile(r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")
_KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}\Z")
_KEY_VERSION = re.compile(r"^[0-9a-fA-F]{32}\Z")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # one C scan, not a Python loop per character
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_GROUP = re.compile(r"^[-\w._()]{1,90}\Z")
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/(?P<provider>[^/]+)/(?P<type>[^/]+)/"
    r"(?P<name>[^/]+)\Z",
    re.IGNORECASE,
)

REGISTRY = "Microsoft.ContainerRegistry/registries"
BATCH_ACCOUNT = "Microsoft.Batch/batchAccounts"
CONTAINER_GROUP = "Microsoft.ContainerInstance/containerGroups"
STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
DISK_ENCRYPTION_SET = "Microsoft.Compute/diskEncryptionSets"
SQL_SERVER = "Microsoft.Sql/servers"
USER_ASSIGNED_IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
LOG_ANALYTICS_CLUSTER = "Microsoft.OperationalInsights/clusters"
KUSTO_CLUSTER = "Microsoft.Kusto/clusters"
EVENTHUB_NAMESPACE = "Microsoft.EventHub/namespaces"
SERVICEBUS_NAMESPACE = "Microsoft.ServiceBus/namespaces"
COSMOS_ACCOUNT = "Microsoft.DocumentDB/databaseAccounts"
MANAGED_CLUSTER = "Microsoft.ContainerService/managedClusters"
DATA_FACTORY = "Microsoft.DataFactory/factories"
DATABRICKS_WORKSPACE = "Microsoft.Databricks/workspaces"
POSTGRES_FLEXIBLE_SERVER = "Microsoft.DBforPostgreSQL/flexibleServers"
MYSQL_FLEXIBLE_SERVER = "Microsoft.DBforMySQL/flexibleServers"
# Managed HSM pools serve the Key Vault keys API on their own hosts (<name>.managedhsm.azure.net).
HSM_SUFFIXES = ("managedhsm.azure.net", "managedhsm.azure.cn", "managedhsm.usgovcloudapi.net")


class InvalidId(RotationError, ValueError):
    """An id that does not have the expected shape; the message says which part is wrong."""


@dataclass(frozen=True)
class KeyRef:
    """A Key Vault key, with or without a version. Host is lower-case; names compare case-insensitively."""

    vault_host: str
    name: str
    version: str | None = None

    @property
    def vault_url(self) -> str:
        return f"https://{self.vault_host}"

    @property
    def vault_name(self) -> str:
        """The vault's or Managed HSM pool's name: the host's first label."""
        return self.vault_host.split(".", 1)[0]

    @property
    def in_managed_hsm(self) -> bool:
        return is_managed_hsm_host(self.vault_host)

    @property
    def versionless_id(self) -> str:
        return f"https://{self.vault_host}/keys/{self.name}"

    @property
    def id(self) -> str:
        return f"{self.versionless_id}/{self.version}" if self.version else self.versionless_id

    @property
    def identity(self) -> tuple[str, str]:
        """What makes two references the same key: vault host and key name, case-insensitively."""
        return (self.vault_host, self.name.lower())

    def same_key(self, other: KeyRef) -> bool:
        return self.identity == other.identity

    def versionless(self) -> KeyRef:
        return KeyRef(self.vault_host, self.name)

    def with_version(self, version: str) -> KeyRef:
        return KeyRef(self.vault_host, self.name, version.lower())

    def __str__(self) -> str:
        return self.id


def parse_key_id(text: object, *, require_version: bool = False, allow_version: bool = True) -> KeyRef:
    """Parse https://<vault-host>/keys/<name>[/<version>] strictly (no port, query, userinfo)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidId("key id: expected https://<vault>.vault.azure.net/keys/<name>[/<version>]")
    return _parse_key_id(text.strip(), require_version, allow_version)


# A run reads the same few key ids on every target (each consumer names the key's old or new
# version): parsed once each. Bounded; a refused id raises and is not kept.
@functools.lru_cache(maxsize=1024)
def _parse_key_id(text: str, require_version: bool, allow_version: bool) -> KeyRef:
    if len(text) > 512:
        raise InvalidId("key id: too long")
    if _SPACE_OR_CONTROL.search(text):
        # urlsplit would silently drop tabs and newlines and parse something else
        raise InvalidId("key id: must not contain spaces or control characters")
    parts, port = _split(text)
    if parts.scheme.lower() != "https":
        raise InvalidId(f"key id {text!r}: must use https")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidId(f"key id {text!r}: must not carry credentials, a query or a fragment")
    host = (parts.hostname or "").lower()
    if port not in (None, 443) or not HOST_NAME.match(host):
        raise InvalidId(f"key id {text!r}: {host or 'the host'} is not a vault hostname")
    segments = parts.path.split("/")
    if segments and segments[-1] == "":
        segments = segments[:-1]  # tolerate one trailing slash
    if len(segments) not in (3, 4) or segments[0] != "" or segments[1].lower() != "keys":
        raise InvalidId(f"key id {text!r}: path must be /keys/<name>[/<version>]")
    name = segments[2]
    if not _KEY_NAME.match(name):
        raise InvalidId(f"key id {text!r}: key names are 1-127 letters, digits and dashes")
    version = segments[3] if len(segments) == 4 else None
    if version is not None and not _KEY_VERSION.match(version):
        raise InvalidId(f"key id {text!r}: a key version is 32 hexadecimal characters")
    if require_version and version is None:
        raise InvalidId(f"key id {text!r}: a version is required")
    if version is not None and not allow_version:
        raise InvalidId(f"key id {text!r}: must not carry a version")
    return KeyRef(host, name, version.lower() if version else None)


def _split(text: str) -> tuple[SplitResult, int | None]:
    """urlsplit and its port, with their ValueErrors (a look-alike of '@', '/' or ':' under NFKC,
    an unclosed IPv6 bracket, a port out of range or not a number) refused like any bad id."""
    try:
        parts = urlsplit(text)
        return parts, parts.port
    except ValueError as exc:
        raise InvalidId(f"key id {text!r}: not a URL this system accepts ({exc})") from None


def is_managed_hsm_host(host: str) -> bool:
    """Whether a key host is a Managed HSM pool (<name>.managedhsm.azure.net and its clouds)."""
    _, _, suffix = host.lower().partition(".")
    return suffix in HSM_SUFFIXES


def key_from_parts(vault_base_url: str, name: str, version: str | None) -> KeyRef:
    """A key from a container group's encryptionProperties (vaultBaseUrl, keyName, keyVersion)."""
    base = (vault_base_url or "").strip().rstrip("/")
    return parse_key_id(f"{base}/keys/{(name or '').strip()}" + (f"/{version.strip()}" if version else ""))


@dataclass(frozen=True)
class ResourceId:
    subscription: str
    resource_group: str
    provider: str
    type: str
    name: str

    @property
    def full_type(self) -> str:
        return f"{self.provider}/{self.type}"

    # The id's text and key are asked for many times a target (its name in steps, rows, records
    # and lanes): built once, on first use (the instance's own attribute from then on).
    @functools.cached_property
    def _text(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
            f"{self.provider}/{self.type}/{self.name}"
        )

    def __str__(self) -> str:
        return self._text

    @functools.cached_property
    def key(self) -> str:
        """Case-insensitive identity, as ARM compares ids."""
        return self._text.lower()


def parse_resource_id(text: str, expected_types: Collection[str] | None) -> ResourceId:
    """An ARM id of one of `expected_types` (canonical casing), or of any type when None (its
    shape only). The types a target may have are the registry's (rotation/azure/kinds)."""
    if not isinstance(text, str) or len(text) > 1024:
        raise InvalidId(
            "resource id: expected /subscriptions/<id>/resourceGroups/<rg>/providers/<type>/<name>"
        )
    match = _RESOURCE_ID.match(text.strip())
    if not match:
        raise InvalidId(
            f"resource id {text!r}: expected /subscriptions/<id>/resourceGroups/<rg>/providers/"
            "<namespace>/<type>/<name>"
        )
    if not GUID.match(match["sub"]):
        raise InvalidId(f"resource id {text!r}: the subscription is not a GUID")
    if not _GROUP.match(match["rg"]) or match["rg"].endswith("."):
        raise InvalidId(f"resource id {text!r}: invalid resource group name")
    if not _RESOURCE_NAME.match(match["name"]):
        raise InvalidId(f"resource id {text!r}: invalid resource name")
    full_type = f"{match['provider']}/{match['type']}"
    if expected_types is None:
        return ResourceId(match["sub"].lower(), match["rg"], match["provider"], match["type"], match["name"])
    canonical = next((t for t in expected_types if t.lower() == full_type.lower()), None)
    if canonical is None:
        raise InvalidId(f"resource id {text!r}: type {full_type} is not one of {', '.join(expected_types)}")
    provider, rtype = canonical.split("/")
    return ResourceId(match["sub"].lower(), match["rg"], provider, rtype, match["name"])


# Shard run ids follow from the parent's run id, its lease generation (fence) and the shard's
# place (uuid5): a replayed shard continues the same run, and `audit verify` finds a parent's
# shards without a listing.
_SHARD_IDS = uuid.UUID("5b1d3c2e-7a43-4f0e-9d51-3c5f0e6a2b17")


def shard_run_id(parent_run_id: str, fence: int, index: int) -> str:
    return str(uuid.uuid5(_SHARD_IDS, f"{parent_run_id}/{fence}/{index}"))
