"""Azure Database for PostgreSQL and for MySQL flexible servers
(Microsoft.DBforPostgreSQL/flexibleServers at api-version 2025-08-01,
Microsoft.DBforMySQL/flexibleServers at 2024-12-30): the same encryption shape, so one module
and two kinds.

`properties.dataEncryption` holds `type: AzureKeyVault`, the data key `primaryKeyURI` with the
user-assigned identity it is reached with (`primaryUserAssignedIdentityId`), and, on a server
with geo-redundant backups, `geoBackupKeyURI` with `geoBackupUserAssignedIdentityId` (a key in
the paired region's vault). A server is one Consumer per key it holds: when both URIs name the
key being rotated, one PATCH moves both; a geo-backup key of another vault is another key and is
left exactly as read. The PATCH sends the whole `dataEncryption` (identities as read), so
nothing else of it changes. PostgreSQL's PATCH answers 202 with `Azure-AsyncOperation` (final
state from it); MySQL's 200, or 202 with `Azure-AsyncOperation` and `Location` (final state via
`Location`); both are followed to their end and the server read back. Both services take
customer-managed keys only through a user-assigned identity, RSA 2048, 3072 or 4096 bits, from a
vault or a Managed HSM.

PostgreSQL follows a versionless `primaryKeyURI` itself (its docs: re-encrypted within 30
minutes) and asks to keep the old version 2 hours after a rotation, which the retire guard holds
(`retire_grace`). The MySQL docs read for this say nothing of a versionless URI; one is what it
is, a key id naming no version, so it is reported `auto-rotating` and never written, like every
versionless consumer. MySQL's docs list "the expiration date isn't set" among the key's
requirements, so the renewal never sets one on a key a MySQL server uses (`forbids_key_expiry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.model.consumer import Consumer
from rotation.model.decisions import Check
from rotation.model.ids import (
    MYSQL_FLEXIBLE_SERVER,
    POSTGRES_FLEXIBLE_SERVER,
    InvalidId,
    KeyRef,
    parse_key_id,
)

AZURE_KEY_VAULT = "AzureKeyVault"
# (key URI field, identity field) of each key a server holds, in the wire's spelling.
SLOTS = (
    ("primaryKeyURI", "primaryUserAssignedIdentityId"),
    ("geoBackupKeyURI", "geoBackupUserAssignedIdentityId"),
)
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
POSTGRES_GRACE = timedelta(hours=2)
INACCESSIBLE = (
    "PostgreSQL makes the server Inaccessible within 60 minutes of its key version being disabled or "
    "expiring: act before then"
)


def data_encryption(resource: Mapping[str, Any]) -> dict[str, str]:
    """The server's `dataEncryption` as written back (type, URIs, identities), values as read;
    empty when it does not use a customer-managed key."""
    raw = a.properties(resource).get("dataEncryption")
    if not isinstance(raw, dict) or str(raw.get("type") or "") != AZURE_KEY_VAULT:
        return {}
    fields = [f for slot in SLOTS for f in slot]
    return {"type": AZURE_KEY_VAULT, **{f: str(raw[f]) for f in fields if raw.get(f)}}


def slot_keys(encryption: Mapping[str, str]) -> dict[str, KeyRef]:
    """URI field -> the key it names, for each URI that parses."""
    found = {}
    for uri_field, _ in SLOTS:
        try:
            found[uri_field] = parse_key_id(encryption.get(uri_field) or "")
        except InvalidId:
            continue
    return found


def moved(encryption: Mapping[str, str], to_key: KeyRef) -> dict[str, str]:
    """`dataEncryption` with every URI of `to_key`'s key moved to its version, the rest as read."""
    keys = slot_keys(encryption)
    return {f: (to_key.id if f in keys and keys[f].same_key(to_key) else v) for f, v in encryption.items()}


def actions(namespace: str) -> tuple[str, ...]:
    """Read and write the server; its long-running PATCH's status at either link it hands out."""
    return (
        f"{namespace}/flexibleServers/read",
        f"{namespace}/flexibleServers/write",
        f"{namespace}/locations/azureAsyncOperation/read",
        f"{namespace}/locations/operationResults/read",
    )


def identity_fact(
    resource: Mapping[str, Any], encryption: Mapping[str, str], slots: list[str]
) -> tuple[str, bool]:
    """(who, assigned): the identity this key's URIs are reached with, and whether every identity the
    PATCH sends back (the other key's too) is one of the server's; else the first that is not."""
    assigned = a.user_assigned(resource)
    sent = [encryption.get(identity, "") for _, identity in SLOTS if encryption.get(identity)]
    missing = [i for i in sent if i.lower() not in assigned]
    own = [encryption.get(dict(SLOTS)[f], "") for f in slots]
    if missing or not all(own):
        return (missing[0] if missing else "none named"), False
    return own[0], True


class FlexibleServers(a.ArmTargetKind):
    """The shape both services share; each kind names its type, api-version and rules."""

    service: str
    plan_checks: tuple[Check, ...]
    blocked_note: str | None = None  # said in every `blocked` step of its servers
    note: str | None = None  # said in every step of its servers

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        resource_id = a.resource_id_of(resource, self.resource_type)
        encryption = data_encryption(resource)
        keys = slot_keys(encryption)
        if resource_id is None or not keys:
            return []
        status = a.properties(resource).get("dataEncryption", {}).get("primaryEncryptionKeyStatus")
        groups: dict[tuple[str, str], list[str]] = {}
        for uri_field, key in keys.items():
            groups.setdefault(key.identity, []).append(uri_field)
        found: list[Consumer] = []
        for same in groups.values():
            extra = {
                "dataEncryption": encryption,
                "slots": same,
                "primaryEncryptionKeyStatus": status,
                "blockedNote": self.blocked_note,
                "note": self.note,
            }
            who = identity_fact(resource, encryption, same)
            # Both URIs of one key on different versions: a Consumer per version, the geo-backup's
            # first (the plan's; people change the primary by hand, so the backup is likelier to
            # lag), the other kept so inventory and the retire guard count its version as held.
            held = {(keys[f].version or "").lower(): keys[f] for f in reversed(same)}
            found += [
                a.consumer(self.kind, resource_id, resource, k, who, follows=k.version is None, extra=extra)
                for k in held.values()
            ]
        return found

    def write_body(self, consumer: Consumer, to_key: KeyRef) -> dict[str, Any]:
        return {"properties": {"dataEncryption": moved(consumer.extra["dataEncryption"], to_key)}}

    def verified(self, shown: Consumer, to_key: KeyRef) -> bool:
        """Every URI of this key (the primary and a geo-backup URI of the same key) reads back on
        the new version."""
        keys = slot_keys(shown.extra.get("dataEncryption") or {})
        held = [k for k in keys.values() if k.same_key(to_key)]
        return bool(held) and all(k.version == to_key.version for k in held)


class PostgresFlexibleServers(FlexibleServers):
    kind = "postgresflexible"
    service = "Azure Database for PostgreSQL flexible server"
    resource_type = POSTGRES_FLEXIBLE_SERVER
    arm_actions = actions("Microsoft.DBforPostgreSQL")
    api_version = "2025-08-01"
    plan_checks: tuple[Check, ...] = (a.accepts_key_types(service, ACCEPTED_KEYS),)
    blocked_note = INACCESSIBLE
    remediation = {
        "": "The PostgreSQL server could not use the key version: check that the user-assigned identity named "
        "in dataEncryption is assigned to the server and has get, wrapKey and unwrapKey on the key (or 'Key "
        "Vault Crypto Service Encryption User'), and that the vault has soft delete and purge protection; see "
        "https://learn.microsoft.com/azure/postgresql/flexible-server/concepts-data-encryption.",
    }

    def retire_grace(self, consumer: Consumer) -> timedelta:
        """The docs ask to keep the old version 2 hours after the server moved off it."""
        return POSTGRES_GRACE

    def healthy(self, consumer: Consumer) -> str | None:
        status = consumer.extra.get("primaryEncryptionKeyStatus")
        if str(status or "").lower() == "invalid":
            return "the server reports primaryEncryptionKeyStatus Invalid"
        return None


class MySqlFlexibleServers(FlexibleServers):
    kind = "mysqlflexible"
    service = "Azure Database for MySQL flexible server"
    resource_type = MYSQL_FLEXIBLE_SERVER
    arm_actions = actions("Microsoft.DBforMySQL")
    api_version = "2024-12-30"
    plan_checks: tuple[Check, ...] = (a.accepts_key_types(service, ACCEPTED_KEYS),)
    forbids_key_expiry = True  # the MySQL docs: "the expiration date isn't set"
    note = (
        "MySQL refuses a key with an expiration date: this system sets none on this key, nor makes a version "
        "with one, while a MySQL server uses it"
    )
    remediation = {
        "": "The MySQL server could not use the key version: check that the user-assigned identity named in "
        "dataEncryption is assigned to the server and has get, list, wrapKey and unwrapKey on the key, that "
        "the key has no expiration date, and that the vault has soft delete and purge protection; see "
        "https://learn.microsoft.com/azure/mysql/flexible-server/concepts-customer-managed-key.",
    }
