"""Scenario files (docs/scenario.md): load one into a World, dump a World back.

Times are epoch seconds or offsets from load time ("-40d", "+325d", "+2h", "-30m", "+10s"),
so a shipped scenario never goes stale. Optional fields take Azure's defaults.
"""

from __future__ import annotations

import copy
import re
import secrets
from typing import Any

from .containergroups import SPEC_FIELDS
from .scenario_cmk import (
    CMK_ENTRY_TYPES,
    CMK_KINDS,
    dump_cmk_kinds,
    load_cmk_kinds,
    with_system,
)
from .scenario_documents import DOCUMENT_ENTRY_TYPES, dump_document_kinds, load_document_kinds
from .scenario_fields import ScenarioError, arm_id, attached_identities, load_entries, require
from .state import (
    EC_OPS,
    RSA_OPS,
    BatchAccount,
    ContainerGroup,
    Identity,
    Key,
    KeyVersion,
    Registry,
    Vault,
    World,
    arm_parts,
    new_version_id,
    now,
    random_public_jwk,
    stable_uuid,
)

_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_VERSION = re.compile(r"^[0-9a-fA-F]{32}$")
_VAULT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
_KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_KEY_TYPES = {"RSA", "RSA-HSM", "EC", "EC-HSM"}
RECOVERY_LEVELS = {
    "Purgeable",
    "Recoverable+Purgeable",
    "Recoverable",
    "Recoverable+ProtectedSubscription",
    "CustomizedRecoverable+Purgeable",
    "CustomizedRecoverable",
    "CustomizedRecoverable+ProtectedSubscription",
}


def parse_time(value: Any, where: str, *, base: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: expected epoch seconds or an offset like '-40d', got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        match = _OFFSET.match(text)
        if match:
            seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"]]
            return int(
                (base if base is not None else now()) + (seconds if match["sign"] == "+" else -seconds)
            )
    raise ScenarioError(f"{where}: expected epoch seconds or an offset like '-40d', got {value!r}")


# The top-level list that holds each ARM type a resource provider here serves; the product's
# kinds are checked against it (tests/unit/test_kind_completeness.py).
ENTRY_TYPES: dict[str, str] = {
    "registries": "Microsoft.ContainerRegistry/registries",
    "batchAccounts": "Microsoft.Batch/batchAccounts",
    "containerGroups": "Microsoft.ContainerInstance/containerGroups",
    **CMK_ENTRY_TYPES,
    **DOCUMENT_ENTRY_TYPES,
}


def load(world: World, scenario: Any) -> None:
    """Replace the world's estate with the scenario's. Validates everything before changing anything."""
    if not isinstance(scenario, dict):
        raise ScenarioError("scenario: expected a JSON object")
    unknown = set(scenario) - {"vaults", "identities", "subscriptions", *ENTRY_TYPES, *CMK_KINDS}
    if unknown:
        raise ScenarioError(f"scenario: unknown top-level fields {sorted(unknown)}")
    base = now()
    staged = World()
    _load_identities(scenario.get("identities") or {}, staged)
    for vault_name, spec in (scenario.get("vaults") or {}).items():
        staged.vaults[vault_name.lower()] = _load_vault(vault_name, spec or {}, base)
    for hsm_name, spec in (scenario.get("managedHsms") or {}).items():
        staged.managed_hsms[hsm_name.lower()] = _load_vault(hsm_name, spec or {}, base, "managedHsms")
    load_entries(scenario, "registries", _load_registry, staged, staged.registries)
    load_entries(scenario, "batchAccounts", _load_batch, staged, staged.batch_accounts)
    load_entries(scenario, "containerGroups", _load_group, staged, staged.container_groups)
    load_cmk_kinds(scenario, staged)
    load_document_kinds(scenario, staged)
    staged.subscriptions = {s.lower() for s in scenario.get("subscriptions") or []}
    for resource_id in [
        *staged.registries,
        *staged.batch_accounts,
        *staged.container_groups,
        *staged.keyed,
        *staged.storage_accounts,
        *staged.disk_encryption_sets,
        *staged.sql_servers,
        *staged.documents,
    ]:
        match = arm_parts(resource_id)
        staged.subscriptions.add(match["sub"].lower())
        staged.resource_groups.add((match["sub"].lower(), match["rg"].lower()))
    with world.lock:
        world.vaults = staged.vaults
        world.identities = staged.identities
        world.registries = staged.registries
        world.batch_accounts = staged.batch_accounts
        world.container_groups = staged.container_groups
        world.keyed = staged.keyed
        world.managed_hsms = staged.managed_hsms
        world.storage_accounts = staged.storage_accounts
        world.disk_encryption_sets = staged.disk_encryption_sets
        world.sql_servers = staged.sql_servers
        world.documents = staged.documents
        world.subscriptions = staged.subscriptions
        world.resource_groups = staged.resource_groups


def _load_identities(identities: dict[str, Any], staged: World) -> None:
    for identity_id, spec in identities.items():
        arm_id(
            identity_id, "Microsoft.ManagedIdentity", "userAssignedIdentities", f"identities[{identity_id!r}]"
        )
        spec = spec or {}
        staged.identities[identity_id.lower()] = Identity(
            identity_id,
            spec.get("clientId") or stable_uuid("client:" + identity_id),
            spec.get("principalId") or stable_uuid("principal:" + identity_id),
        )


def _load_vault(name: str, spec: dict[str, Any], base: int, section: str = "vaults") -> Vault:
    where = f"{section}[{name!r}]"
    if not _VAULT_NAME.match(name):
        raise ScenarioError(f"{where}: vault names are 3-24 letters, digits and dashes")
    level = spec.get("recoveryLevel", "Recoverable+Purgeable")
    if level not in RECOVERY_LEVELS:
        raise ScenarioError(f"{where}.recoveryLevel: one of {sorted(RECOVERY_LEVELS)}")
    days = spec.get("recoverableDays", 90 if "Recoverable" in level else None)
    denied = spec.get("deniedIdentities") or []
    if not isinstance(denied, list) or not all(isinstance(i, str) for i in denied):
        raise ScenarioError(f"{where}.deniedIdentities: a list of identity resource ids or principal ids")
    vault = Vault(
        name=name.lower(),
        recovery_level=level,
        recoverable_days=days,
        denied_identities={i.lower() for i in denied},
    )
    for key_name, key_spec in (spec.get("keys") or {}).items():
        vault.keys[key_name.lower()] = _load_key(
            key_name, key_spec or {}, f"{where}.keys[{key_name!r}]", base
        )
    return vault


def _load_key(name: str, spec: dict[str, Any], where: str, base: int) -> Key:
    if not _KEY_NAME.match(name):
        raise ScenarioError(f"{where}: key names are 1-127 letters, digits and dashes")
    kty = spec.get("kty", "RSA")
    if kty not in _KEY_TYPES:
        raise ScenarioError(f"{where}.kty: one of {sorted(_KEY_TYPES)}")
    is_ec = kty.startswith("EC")
    size = None if is_ec else int(spec.get("size", 2048))
    crv = spec.get("crv", "P-256") if is_ec else None
    key_ops = list(spec.get("keyOps") or (EC_OPS if is_ec else RSA_OPS))
    versions = []
    for index, vspec in enumerate(spec.get("versions") or []):
        vwhere = f"{where}.versions[{index}]"
        version = vspec.get("version") or new_version_id()
        if not _VERSION.match(version):
            raise ScenarioError(f"{vwhere}.version: 32 hex characters")
        created = parse_time(vspec.get("created", base), f"{vwhere}.created", base=base)
        created = base if created is None else created  # "created": null
        updated = parse_time(vspec.get("updated", created), f"{vwhere}.updated", base=base)
        versions.append(
            KeyVersion(
                version=version.lower(),
                enabled=bool(vspec.get("enabled", True)),
                created=created,
                updated=created if updated is None else updated,
                nbf=parse_time(vspec.get("nbf"), f"{vwhere}.nbf", base=base),
                exp=parse_time(vspec.get("exp"), f"{vwhere}.exp", base=base),
                key_ops=list(vspec.get("keyOps") or key_ops),
                tags=dict(vspec.get("tags") or {}),
                public=random_public_jwk(kty, size, crv),
            )
        )
    if not versions:
        raise ScenarioError(f"{where}.versions: a key needs at least one version")
    policy = spec.get("rotationPolicy")
    if policy is not None and not isinstance(policy, dict):
        raise ScenarioError(f"{where}.rotationPolicy: an object with lifetimeActions and attributes, or null")
    return Key(
        name=name,
        kty=kty,
        size=size,
        crv=crv,
        versions=versions,
        rotation_policy=copy.deepcopy(policy),
        tags=dict(spec.get("tags") or {}),
    )


def _load_registry(spec: dict[str, Any], where: str, world: World) -> Registry:
    resource_id = arm_id(
        require(spec, "id", where), "Microsoft.ContainerRegistry", "registries", f"{where}.id"
    )
    identities = attached_identities(spec, where, world)
    encryption_identity = spec.get("encryptionIdentity")
    system_principal = spec.get("systemPrincipalId")
    if encryption_identity == "SystemAssigned" or spec.get("systemAssigned"):
        system_principal = system_principal or stable_uuid("system:" + resource_id)
    elif encryption_identity:
        arm_id(
            encryption_identity,
            "Microsoft.ManagedIdentity",
            "userAssignedIdentities",
            f"{where}.encryptionIdentity",
        )
        world.identity(encryption_identity)
    return Registry(
        id=resource_id,
        location=spec.get("location", "westeurope"),
        key_id=spec.get("keyId"),
        encryption_identity=encryption_identity,
        identities=identities,
        tags=dict(spec.get("tags") or {}),
        system_principal=system_principal,
        properties=dict(spec.get("properties") or {}),
    )


def _load_batch(spec: dict[str, Any], where: str, world: World) -> BatchAccount:
    resource_id = arm_id(require(spec, "id", where), "Microsoft.Batch", "batchAccounts", f"{where}.id")
    identities = attached_identities(spec, where, world)
    system_principal = None
    if spec.get("systemAssigned"):
        system_principal = spec.get("systemPrincipalId") or stable_uuid("system:" + resource_id)
    return BatchAccount(
        id=resource_id,
        location=spec.get("location", "westeurope"),
        key_id=spec.get("keyId"),
        identities=identities,
        tags=dict(spec.get("tags") or {}),
        system_principal=system_principal,
    )


def _load_group(spec: dict[str, Any], where: str, world: World) -> ContainerGroup:
    resource_id = arm_id(
        require(spec, "id", where), "Microsoft.ContainerInstance", "containerGroups", f"{where}.id"
    )
    name = arm_parts(resource_id)["name"]
    identity = spec.get("identity")
    identities = attached_identities(spec, where, world)
    if identity:
        arm_id(identity, "Microsoft.ManagedIdentity", "userAssignedIdentities", f"{where}.identity")
        world.identity(identity)
        if "identities" not in spec:  # by default the group holds the identity it encrypts with
            identities.append(identity)
    encryption = None
    if spec.get("keyName"):
        encryption = {
            "vaultBaseUrl": require(spec, "vaultBaseUrl", where),
            "keyName": spec["keyName"],
            "keyVersion": require(spec, "keyVersion", where),
        }
        if identity:
            encryption["identity"] = identity
    extra = spec.get("properties") or {}  # ARM properties the format does not name, kept as they are
    if not isinstance(extra, dict):
        raise ScenarioError(f"{where}.properties: expected an object of ARM properties")
    group_spec: dict[str, Any] = {
        **copy.deepcopy(extra),
        **{k: copy.deepcopy(spec[k]) for k in SPEC_FIELDS if k in spec},
    }
    group_spec.setdefault(
        "containers",
        [
            {
                "name": name[:63],
                "properties": {
                    "image": "mcr.microsoft.com/azuredocs/aci-helloworld:latest",
                    "ports": [{"port": 80, "protocol": "TCP"}],
                    "environmentVariables": [{"name": "MODE", "value": "production"}],
                    "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}},
                },
            }
        ],
    )
    group_spec.setdefault("osType", "Linux")
    group_spec.setdefault("restartPolicy", "Always")
    group_spec.setdefault("sku", "Standard")
    if spec.get("secureEnvironment") and not has_secure_values(group_spec):
        env = group_spec["containers"][0]["properties"].setdefault("environmentVariables", [])
        env.append({"name": "DB_PASSWORD", "secureValue": secrets.token_urlsafe(16)})
    return ContainerGroup(
        id=resource_id,
        location=spec.get("location", "westeurope"),
        encryption=encryption,
        identities=identities,
        spec=group_spec,
        tags=dict(spec.get("tags") or {}),
        top={"zones": list(spec["zones"])} if spec.get("zones") else {},
    )


def has_secure_values(spec: dict[str, Any]) -> bool:
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        for variable in container.get("properties", {}).get("environmentVariables", []) or []:
            if "secureValue" in variable:
                return True
    if any("password" in c for c in spec.get("imageRegistryCredentials", []) or []):
        return True
    for volume in spec.get("volumes", []) or []:
        if "secret" in volume or "storageAccountKey" in (volume.get("azureFile") or {}):
            return True
    return bool(((spec.get("diagnostics") or {}).get("logAnalytics") or {}).get("workspaceKey"))


def dump(world: World) -> dict[str, Any]:
    """The current state in the scenario format (times as epoch seconds)."""
    with world.lock:
        return {
            "vaults": {name: _dump_vault(vault) for name, vault in world.vaults.items()},
            "identities": {
                i.id: {"clientId": i.client_id, "principalId": i.principal_id}
                for i in world.identities.values()
            },
            "registries": [_dump_registry(r) for r in world.registries.values()],
            "batchAccounts": [_dump_batch(b) for b in world.batch_accounts.values()],
            "containerGroups": [_dump_group(g) for g in world.container_groups.values()],
            "managedHsms": {name: _dump_vault(hsm) for name, hsm in world.managed_hsms.items()},
            **dump_cmk_kinds(world),
            **dump_document_kinds(world),
            "subscriptions": sorted(world.subscriptions),
        }


def _dump_vault(vault: Vault) -> dict[str, Any]:
    return {
        "recoveryLevel": vault.recovery_level,
        "recoverableDays": vault.recoverable_days,
        "deniedIdentities": sorted(vault.denied_identities),
        "keys": {
            key.name: {
                "kty": key.kty,
                **({"size": key.size} if key.size else {"crv": key.crv}),
                "rotationPolicy": copy.deepcopy(key.rotation_policy),
                "tags": dict(key.tags),
                "versions": [
                    {
                        "version": v.version,
                        "enabled": v.enabled,
                        "created": v.created,
                        "updated": v.updated,
                        "nbf": v.nbf,
                        "exp": v.exp,
                        "keyOps": list(v.key_ops),
                        "tags": dict(v.tags),
                    }
                    for v in key.versions
                ],
            }
            for key in vault.keys.values()
        },
    }


def _dump_registry(registry: Registry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": registry.id,
        "location": registry.location,
        "keyId": registry.key_id,
        "encryptionIdentity": registry.encryption_identity,
        "identities": list(registry.identities),
        "tags": dict(registry.tags),
    }
    with_system(out, registry.system_principal)
    if registry.properties:
        out["properties"] = copy.deepcopy(registry.properties)
    return out


def _dump_batch(account: BatchAccount) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": account.id,
        "location": account.location,
        "keyId": account.key_id,
        "identities": list(account.identities),
        "tags": dict(account.tags),
    }
    with_system(out, account.system_principal)
    return out


def _dump_group(group: ContainerGroup) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": group.id,
        "location": group.location,
        "tags": dict(group.tags),
        "identities": list(group.identities),
    }
    if group.encryption:
        out.update(
            {
                "vaultBaseUrl": group.encryption["vaultBaseUrl"],
                "keyName": group.encryption["keyName"],
                "keyVersion": group.encryption["keyVersion"],
                "identity": group.encryption.get("identity"),
            }
        )
    out["secureEnvironment"] = has_secure_values(group.spec)
    out.update({k: copy.deepcopy(v) for k, v in group.spec.items() if k in SPEC_FIELDS})
    extra = {k: copy.deepcopy(v) for k, v in group.spec.items() if k not in SPEC_FIELDS}
    if extra:
        out["properties"] = extra
    out.update(copy.deepcopy(group.top))
    return out
