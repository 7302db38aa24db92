"""Scenario entries for the kinds kept as a whole document (emulator/documents.py):
`dataFactories` and `databricksWorkspaces` (docs/scenario.md). Each has the common fields (`id`,
`location`, `tags`, `identities`, `systemAssigned`), its keys as full key ids (versionless when
the resource follows the key) and `properties`: any other ARM properties, kept and served as
they are (and as the product's PUT leaves them)."""

from __future__ import annotations

import copy
from typing import Any

from .cmk import key_parts
from .documents import new_etag
from .scenario_fields import ScenarioError, arm_id, attached_identities, require
from .state import ArmDocument, World, stable_uuid

DOCUMENT_ENTRY_TYPES: dict[str, str] = {
    "dataFactories": "Microsoft.DataFactory/factories",
    "databricksWorkspaces": "Microsoft.Databricks/workspaces",
}
_ENTITY_FIELDS = {"managedServices": "managedServicesKeyId", "managedDisk": "managedDiskKeyId"}
WORKSPACE_ENTITIES = ("managedServices", "managedDisk", "dbfsRoot")


def entity_key(spec: dict[str, Any], entity: str) -> str | None:
    """A workspace entity's key: its own field (`managedServicesKeyId`, `managedDiskKeyId`,
    `dbfsKeyId`), else the entry's `keyId` when `entities` (default: all three) names it."""
    own = spec.get("dbfsKeyId" if entity == "dbfsRoot" else _ENTITY_FIELDS[entity])
    if own:
        return str(own)
    shared = spec.get("keyId")
    named = spec.get("entities")
    return str(shared) if shared and entity in (WORKSPACE_ENTITIES if named is None else named) else None


def _properties(spec: dict[str, Any], where: str) -> dict[str, Any]:
    value = spec.get("properties") or {}
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}.properties: a JSON object")
    return copy.deepcopy(value)


def _factory(spec: dict[str, Any], properties: dict[str, Any], where: str, world: World) -> dict[str, Any]:
    if spec.get("keyId"):
        parts = key_parts(str(spec["keyId"]))
        encryption: dict[str, Any] = {"vaultBaseUrl": parts["keyVaultUri"], "keyName": parts["keyName"]}
        if parts["keyVersion"]:
            encryption["keyVersion"] = parts["keyVersion"]
        named = spec.get("keyIdentity")
        if named:
            world.identity(
                arm_id(named, "Microsoft.ManagedIdentity", "userAssignedIdentities", f"{where}.keyIdentity")
            )
            encryption["identity"] = {"userAssignedIdentity": named}
        properties["encryption"] = encryption
    return {"properties": properties}


def _workspace(spec: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    for entity in _ENTITY_FIELDS:
        key = entity_key(spec, entity)
        if key:
            entities[entity] = {"keySource": "Microsoft.Keyvault", "keyVaultProperties": key_parts(key)}
    if "managedDisk" in entities:
        entities["managedDisk"]["rotationToLatestKeyVersionEnabled"] = bool(
            spec.get("managedDiskAutoRotation")
        )
    if entities:
        properties.setdefault("encryption", {})["entities"] = entities
    dbfs = entity_key(spec, "dbfsRoot")
    if dbfs:
        parts = key_parts(dbfs)
        value = {
            "keySource": "Microsoft.Keyvault",
            "KeyName": parts["keyName"],
            "keyversion": parts["keyVersion"],
        }
        parameters = properties.setdefault("parameters", {})
        parameters["encryption"] = {"value": {**value, "keyvaulturi": parts["keyVaultUri"]}}
        parameters.setdefault("prepareEncryption", {"value": True})
    properties.setdefault(
        "managedResourceGroupId",
        f"/subscriptions/{spec['id'].split('/')[2]}/resourceGroups/databricks-rg-{spec['id'].rsplit('/', 1)[1]}",
    )
    properties.setdefault("computeMode", "Hybrid")
    return {"properties": properties, "sku": spec.get("sku") or {"name": "premium"}}


def _load(spec: Any, where: str, world: World, entry: str) -> ArmDocument:
    resource_type = DOCUMENT_ENTRY_TYPES[entry]
    provider, rtype = resource_type.split("/")
    resource_id = arm_id(require(spec, "id", where), provider, rtype, f"{where}.id")
    properties = _properties(spec, where)
    document = (
        _factory(spec, properties, where, world) if entry == "dataFactories" else _workspace(spec, properties)
    )
    system = (
        spec.get("systemPrincipalId") or stable_uuid("system:" + resource_id)
        if spec.get("systemAssigned")
        else None
    )
    return ArmDocument(
        id=resource_id,
        type=resource_type,
        location=spec.get("location", "westeurope"),
        tags=dict(spec.get("tags") or {}),
        identities=attached_identities(spec, where, world),
        document=document,
        etag=new_etag(),
        system_principal=system,
    )


def load_document_kinds(scenario: dict[str, Any], staged: World) -> None:
    for entry in DOCUMENT_ENTRY_TYPES:
        for index, spec in enumerate(scenario.get(entry) or []):
            resource = _load(spec, f"{entry}[{index}]", staged, entry)
            staged.documents[resource.id.lower()] = resource


def _key_id(block: dict[str, Any] | None, vault: str, name: str, version: str) -> str | None:
    if not isinstance(block, dict) or not block.get(name):
        return None
    base = f"{str(block.get(vault) or '').rstrip('/')}/keys/{block[name]}"
    return f"{base}/{block[version]}" if block.get(version) else base


def _dump(resource: ArmDocument) -> dict[str, Any]:
    """The entry with its keys as key ids (what the product wrote) and everything else as kept."""
    document = copy.deepcopy(resource.document)
    properties = document.get("properties") or {}
    out: dict[str, Any] = {"id": resource.id, "location": resource.location, "tags": dict(resource.tags)}
    out["identities"] = list(resource.identities)
    if resource.system_principal:
        out.update(systemAssigned=True, systemPrincipalId=resource.system_principal)
    if resource.type == DOCUMENT_ENTRY_TYPES["dataFactories"]:
        encryption = properties.pop("encryption", None) or {}
        out["keyId"] = _key_id(encryption, "vaultBaseUrl", "keyName", "keyVersion")
        out["keyIdentity"] = (encryption.get("identity") or {}).get("userAssignedIdentity")
    else:
        entities = (properties.pop("encryption", None) or {}).get("entities") or {}
        for entity, field in _ENTITY_FIELDS.items():
            out[field] = _key_id(
                (entities.get(entity) or {}).get("keyVaultProperties"), "keyVaultUri", "keyName", "keyVersion"
            )
        out["managedDiskAutoRotation"] = bool(
            (entities.get("managedDisk") or {}).get("rotationToLatestKeyVersionEnabled")
        )
        dbfs = ((properties.get("parameters") or {}).pop("encryption", None) or {}).get("value")
        out["dbfsKeyId"] = _key_id(dbfs, "keyvaulturi", "KeyName", "keyversion")
        held = [out[f] for f in ("managedServicesKeyId", "managedDiskKeyId", "dbfsKeyId") if out[f]]
        out["keyId"], out["entities"] = (held[0] if held else None), []  # each entity says its own
        out["sku"] = document.get("sku")
    out["properties"] = properties
    return out


def dump_document_kinds(world: World) -> dict[str, Any]:
    """Caller holds world.lock."""
    return {
        entry: [_dump(r) for r in world.documents.values() if r.type == resource_type]
        for entry, resource_type in DOCUMENT_ENTRY_TYPES.items()
    }
