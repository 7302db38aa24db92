"""Azure Databricks workspaces (Microsoft.Databricks/workspaces, api-version 2026-01-01): a
workspace can hold a customer-managed key in three places, each reached by its own identity:

| entity | where | identity |
|---|---|---|
| `managedServices` | `properties.encryption.entities.managedServices.keyVaultProperties.{keyVaultUri, keyName, keyVersion}` | the AzureDatabricks first-party application (always present) |
| `managedDisk` | `properties.encryption.entities.managedDisk.keyVaultProperties` (same), `rotationToLatestKeyVersionEnabled` | `properties.managedDiskIdentity` (system-assigned) |
| `dbfsRoot` | `properties.parameters.encryption.value.{keySource, KeyName, keyversion, keyvaulturi}` (the spec's casing) | `properties.storageAccountIdentity` (system-assigned) |

A workspace is one Consumer per key it uses (as a namespace is, messaging.py): the step names
the entities that hold the key (`extra["entities"]`, and the plan message), and one write moves
every entity pinned to an old version of that key, so two entities of one workspace never race
each other's PUT. A managed disk with `rotationToLatestKeyVersionEnabled` follows the key by
itself (`auto-rotating`) and is left as it is. Pinned entities of one key on different
versions (one moved by hand) claim no version: the plan moves them all and names what each
holds. The workspace PATCH takes only tags, so the write is a PUT of the workspace as read
(putkind.py), with `If-Match` when the read gave an ETag (the spec declares none; ARM passes
the header to the provider); the spec's PUT is long-running with
its final state at `Location`, followed by the poller's GET, which is verified. The docs ask to
keep the old key 24 hours after rotating managed services: `retire_grace`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.azure.kinds.protocol import KEY_PARTS
from rotation.azure.kinds.putkind import PutAsReadKind
from rotation.model.consumer import Consumer
from rotation.model.decisions import UPDATE, Check, Decision, PolicyContext
from rotation.model.ids import DATABRICKS_WORKSPACE, InvalidId, KeyRef, key_from_parts

API_VERSION = "2026-01-01"
# Databricks wraps with RSA keys of 2048, 3072 or 4096 bits, from a vault or a Managed HSM.
ACCEPTED_KEYS = {"RSA": (2048, 3072, 4096), "RSA-HSM": (2048, 3072, 4096)}
MANAGED_SERVICES_GRACE = timedelta(hours=24)  # "keep the old key available for 24 hours"
FIRST_PARTY = "AzureDatabricks"  # the application managed services reach the key with
# entity -> (path to its key block, its field names for vault, name and version)
ENTITIES: dict[str, tuple[tuple[str, ...], tuple[str, str, str]]] = {
    "managedServices": (
        ("properties", "encryption", "entities", "managedServices", "keyVaultProperties"),
        ("keyVaultUri", "keyName", "keyVersion"),
    ),
    "managedDisk": (
        ("properties", "encryption", "entities", "managedDisk", "keyVaultProperties"),
        ("keyVaultUri", "keyName", "keyVersion"),
    ),
    "dbfsRoot": (
        ("properties", "parameters", "encryption", "value"),
        ("keyvaulturi", "KeyName", "keyversion"),
    ),
}
REMEDIATION = {
    "": "The workspace could not use the key version: grant get, wrapKey and unwrapKey on the key to the "
    "AzureDatabricks application (managed services), the workspace's managedDiskIdentity (managed disks) or "
    "storageAccountIdentity (DBFS root), and check the vault's soft delete and purge protection; see "
    "https://learn.microsoft.com/azure/databricks/security/keys/customer-managed-keys.",
}


@dataclass(frozen=True)
class Entity:
    name: str
    key: KeyRef
    follows: bool  # the service moves it to new versions itself
    identity: str
    assigned: bool


def _at(document: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = document
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _key(block: Mapping[str, Any], fields: tuple[str, str, str]) -> KeyRef | None:
    vault, name, version = (block.get(f) for f in fields)
    if not vault or not name:
        return None
    try:
        return key_from_parts(str(vault), str(name), str(version) if version else None)
    except InvalidId:
        return None


def _identity(resource: Mapping[str, Any], entity: str) -> tuple[str, bool]:
    if entity == "managedServices":
        return FIRST_PARTY, True
    field = "managedDiskIdentity" if entity == "managedDisk" else "storageAccountIdentity"
    identity = a.properties(resource).get(field)
    return field, isinstance(identity, dict) and bool(identity.get("principalId"))


def entities_of(resource: Mapping[str, Any]) -> list[Entity]:
    found = []
    for name, (path, fields) in ENTITIES.items():
        block = _at(resource, path)
        if block is None or (
            name == "dbfsRoot" and str(block.get("keySource", "")).lower() != "microsoft.keyvault"
        ):
            continue
        key = _key(block, fields)
        if key is None:
            continue
        disk = _at(resource, path[:-1]) or {}
        follows = key.version is None or (
            name == "managedDisk" and bool(disk.get("rotationToLatestKeyVersionEnabled"))
        )
        found.append(Entity(name, key, follows, *_identity(resource, name)))
    return found


def to_consumers(resource: Mapping[str, Any]) -> list[Consumer]:
    resource_id = a.resource_id_of(resource, DATABRICKS_WORKSPACE)
    if resource_id is None:
        return []
    by_key: dict[tuple[str, str], list[Entity]] = {}
    for entity in entities_of(resource):
        by_key.setdefault(entity.key.identity, []).append(entity)
    consumers = []
    for entities in by_key.values():
        pinned = [e for e in entities if not e.follows]
        named = pinned or entities  # the ones a write moves; all of them when none is pinned
        identity = ("; ".join(f"{e.name}: {e.identity}" for e in named), all(e.assigned for e in named))
        extra = {"entities": tuple(e.name for e in named), "versions": {e.name: e.key.version for e in named}}
        # Pinned entities on different versions (someone moved one by hand): no one version
        # stands for the workspace, so none is claimed and the plan moves them all.
        key = named[0].key if len({e.key.version for e in named}) == 1 else named[0].key.versionless()
        consumers.append(
            a.consumer("databricks", resource_id, resource, key, identity, follows=not pinned, extra=extra)
        )
    return consumers


def names_entities(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    """An update's message names the workspace's entities it moves, or the versions they hold
    when they differ (an expired or unknown current version keeps the common message)."""
    entities = ", ".join(consumer.extra.get("entities", ()))
    grace = " (the old version stays needed 24 h: managed services)" if "managedServices" in entities else ""
    if consumer.version is None and not consumer.follows_new_versions:
        held = ", ".join(f"{e} on {v}" for e, v in consumer.extra.get("versions", {}).items())
        return Decision(
            UPDATE,
            "behind-desired",
            f"its entities hold different versions ({held}); one PUT moves them{grace}",
        )
    current = ctx.state.version(consumer.version)
    if current is None or current.time_problem(ctx.now):
        return None
    return Decision(
        UPDATE, "behind-desired", f"{entities} behind the desired version; one PUT moves them{grace}"
    )


class DatabricksWorkspaces(PutAsReadKind):
    kind = "databricks"
    key_naming = KEY_PARTS  # keyVaultUri, keyName, keyVersion (DBFS root: keyvaulturi, KeyName, keyversion)
    resource_type = DATABRICKS_WORKSPACE
    arm_actions = (  # the PUT is long-running: its status is read at Location
        "Microsoft.Databricks/workspaces/read",
        "Microsoft.Databricks/workspaces/write",
        "Microsoft.Databricks/locations/operationStatuses/read",
    )
    api_version = API_VERSION
    remediation = REMEDIATION
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("Azure Databricks", ACCEPTED_KEYS), names_entities)
    read_only = (
        *PutAsReadKind.read_only,
        *(
            ("properties", field)
            for field in (
                "provisioningState",
                "createdDateTime",
                "createdBy",
                "updatedBy",
                "workspaceId",
                "workspaceUrl",
                "diskEncryptionSetId",
                "managedDiskIdentity",
                "storageAccountIdentity",
                "privateEndpointConnections",
                "isUcEnabled",
            )
        ),
    )

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return to_consumers(resource)

    def moved(self, document: dict[str, Any], to_key: KeyRef) -> bool:
        changed = False
        for entity in entities_of(document):
            if entity.follows or not entity.key.same_key(to_key) or entity.key.version == to_key.version:
                continue
            path, (_, _, version_field) = ENTITIES[entity.name]
            block = _at(document, path)
            if block is not None:
                block[version_field] = to_key.version
                changed = True
        return changed

    def put_body(self, resource: Mapping[str, Any], to_key: KeyRef) -> dict[str, Any] | None:
        body = super().put_body(resource, to_key)
        parameters = _at(body or {}, ("properties", "parameters"))
        for value in (parameters or {}).values():
            if isinstance(value, dict):
                value.pop("type", None)  # each custom parameter's `type` is read-only
        return body

    def verified(self, shown: Consumer, to_key: KeyRef) -> bool:
        """Every entity the write moved holds the new version."""
        versions = shown.extra.get("versions") or {}
        return bool(versions) and all(v == to_key.version for v in versions.values())

    def retire_grace(self, consumer: Consumer) -> timedelta:
        return (
            MANAGED_SERVICES_GRACE
            if "managedServices" in consumer.extra.get("entities", ())
            else timedelta(0)
        )
