"""Synapse workspaces (Microsoft.Synapse/workspaces, api-version 2021-06-01) encrypted with a
customer-managed key: `properties.encryption.cmk.key.{name, keyVaultUrl}` names the active
workspace key (a child resource `workspaces/{ws}/keys/{name}` holding `{isActiveCMK,
keyVaultUrl}`), reached with `cmk.kekIdentity.{userAssignedIdentity, useSystemAssignedIdentity}`.

Never written by this system. Synapse does not re-encrypt when a new version appears; the docs'
procedure (learn.microsoft.com/azure/synapse-analytics/security/workspaces-encryption, "Workspace
key rotation") is to switch the workspace to a temporary key and back, with every dedicated SQL
pool online, keeping the old version until each pool has re-encrypted. So a workspace behind the
desired version is `manual-required` with that procedure. Keys: "RSA 2048 and 3072 byte-sized
keys, and RSA-HSM keys"; "Synapse workspaces do not support the use of EC, EC-HSM, and oct-HSM
keys" (`key-type-unsupported`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import rotation.azure.kinds.armkind as a
from rotation.model.consumer import Consumer
from rotation.model.decisions import MANUAL_REQUIRED, Check, Decision, PolicyContext
from rotation.model.ids import InvalidId, parse_key_id

API_VERSION = "2021-06-01"
KIND = "synapse"
RESOURCE_TYPE = "Microsoft.Synapse/workspaces"
ACCEPTED_KEYS = {"RSA": (2048, 3072), "RSA-HSM": (2048, 3072)}
_KEY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def kek_identity(workspace: Mapping[str, Any], cmk: Mapping[str, Any]) -> tuple[str, bool]:
    kek = _dict(cmk.get("kekIdentity"))
    named = str(kek.get("userAssignedIdentity") or "")
    if named and not kek.get("useSystemAssignedIdentity"):
        return a.identity_fact(workspace, named)
    return a.identity_fact(workspace, None)


def to_consumer(workspace: Mapping[str, Any]) -> Consumer | None:
    cmk = _dict(_dict(a.properties(workspace).get("encryption")).get("cmk"))
    key_entry = _dict(cmk.get("key"))
    resource_id = a.resource_id_of(workspace, RESOURCE_TYPE)
    if resource_id is None or not key_entry.get("keyVaultUrl"):
        return None
    try:
        key = parse_key_id(str(key_entry["keyVaultUrl"]))
    except InvalidId:
        return None
    name = str(key_entry.get("name") or "")
    # The name goes into a command a person runs: only a name Synapse itself would accept.
    extra = {"workspaceKey": name if _KEY_NAME.fullmatch(name) else ""}
    return a.consumer(
        KIND, resource_id, workspace, key, kek_identity(workspace, cmk), follows=False, extra=extra
    )


def procedure(consumer: Consumer, new_version: str) -> str:
    rid = consumer.resource_id
    where = (
        f"--resource-group {rid.resource_group} --workspace-name {rid.name} --subscription {rid.subscription}"
    )
    active = consumer.extra.get("workspaceKey") or "<active key>"
    if consumer.version is None:  # a versionless key: switching back takes its newest version
        back = (
            f"then activate '{active}' again (az synapse workspace key activate {where} --name {active}): "
            f"it takes version {new_version}"
        )
    else:  # a pinned key: the workspace key to switch back to names the new version
        back = (
            f"then create and activate a workspace key on version {new_version} (az synapse workspace key create "
            f"{where} --name <new> --key-identifier {consumer.key.with_version(new_version).id})"
        )
    return (
        f"bring every dedicated SQL pool online; add a temporary workspace key (az synapse workspace key create "
        f"{where} --name <temporary> --key-identifier <another key>), activate it (az synapse workspace key "
        f"activate {where} --name <temporary>), {back}"
    )


def manual_required(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.kind != KIND or ctx.state.desired is None:
        return None
    return Decision(
        MANUAL_REQUIRED,
        "synapse-reencrypt-by-key-switch",
        f"Synapse does not re-encrypt when a key gets a new version; to move it: "
        f"{procedure(consumer, ctx.state.desired.version)}. Keep the old version enabled until every pool has "
        "re-encrypted.",
    )


class SynapseWorkspaces(a.ArmTargetKind):
    kind = KIND
    resource_type = RESOURCE_TYPE
    arm_actions = (  # seen, never written
        "Microsoft.Synapse/workspaces/read",
    )
    api_version = API_VERSION
    plan_checks: tuple[Check, ...] = (a.accepts_key_types("Synapse", ACCEPTED_KEYS), manual_required)

    def to_consumers(self, resource: Mapping[str, Any]) -> Sequence[Consumer]:
        return a.one(to_consumer(resource))
