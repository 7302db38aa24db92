"""Container Instances groups encrypted with a customer-managed key.

Azure cannot change a group's encryption in place, so a new key version means a redeploy:
read the group's own spec, save it (blob `rotation-redeploy/<resource id>.json`), delete the
group, create it again with the new `keyVersion`, verify, then drop the saved spec. A group
whose GET hides secure values cannot be rebuilt and is never touched. Delete and create are
not idempotent, so they are never retried blindly: after an unclear failure the group is
read again and the next move decided from what is there. A run that finds a saved spec
whose group is missing re-creates the group first.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import tenacity
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from rotation import waits
from rotation.azure.kinds.armkind import each_read, one
from rotation.azure.kinds.protocol import KEY_PARTS, ApplyContext, KindDefaults, has_failed, is_busy
from rotation.azure.retry import Deadline, classify
from rotation.model.consumer import Consumer, Unreadable
from rotation.model.decisions import BLOCKED, REDEPLOY_REQUIRED, Decision, PolicyContext
from rotation.model.errors import Hint, RotationError, TransientCondition
from rotation.model.ids import (
    CONTAINER_GROUP,
    InvalidId,
    KeyRef,
    ResourceId,
    key_from_parts,
    parse_resource_id,
)
from rotation.model.times import utc_now

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

log = logging.getLogger("rotation.targets.containergroup")
REDEPLOY_CONTAINER = "rotation-redeploy"
ACI_SERVICE_PRINCIPAL = "Azure Container Instance Service"
_TOP_READ_ONLY = ("id", "name", "type", "etag", "systemData")
_PROPERTIES_READ_ONLY = ("provisioningState", "instanceView")


class RedeployRolledBack(RotationError):
    """The redeploy failed on the new version; the group was re-created on its previous one."""


class SpecNotReconstructible(RotationError):
    """The group's GET hides secure values (found at write time): it is never deleted."""


def _raw(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    """The GET answer as the service sent it (the SDK model would drop properties it does not know)."""
    return json.loads(pipeline_response.http_response.text())


def secure_values_hidden(properties: dict[str, Any]) -> list[str]:
    """What a GET hid that a re-create would need (empty: the spec can be rebuilt)."""
    hidden = []
    for container in [*(properties.get("containers") or []), *(properties.get("initContainers") or [])]:
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            if variable.get("value") is None and variable.get("secureValue") is None:
                hidden.append(
                    f"secure environment variable {variable.get('name')} of {container.get('name')}"
                )
    for credential in properties.get("imageRegistryCredentials") or []:
        if not credential.get("password") and not credential.get("identity"):
            hidden.append(f"password of registry credential {credential.get('server')}")
    for volume in properties.get("volumes") or []:
        azure_file = volume.get("azureFile")
        if azure_file is not None and not azure_file.get("storageAccountKey"):
            hidden.append(f"storage account key of volume {volume.get('name')}")
        if "secret" in volume:
            hidden.append(f"secret volume {volume.get('name')}")
    for extension in properties.get("extensions") or []:
        # protectedSettings is secret (2023-05-01): a GET never returns it, so a group with an
        # extension cannot be shown to be rebuildable unless the answer carries them
        if (extension.get("properties") or {}).get("protectedSettings") is None:
            hidden.append(f"protected settings of extension {extension.get('name')}")
    log_analytics = (properties.get("diagnostics") or {}).get("logAnalytics")
    if log_analytics is not None and not log_analytics.get("workspaceKey"):
        hidden.append("Log Analytics workspace key")
    return hidden


def creatable_spec(group: dict[str, Any]) -> dict[str, Any]:
    """The group's GET answer minus what only the service sets, ready for a PUT."""
    spec = {k: copy.deepcopy(v) for k, v in group.items() if k not in _TOP_READ_ONLY}
    properties = spec.setdefault("properties", {})
    for name in _PROPERTIES_READ_ONLY:
        properties.pop(name, None)
    for container in [*(properties.get("containers") or []), *(properties.get("initContainers") or [])]:
        (container.get("properties") or {}).pop("instanceView", None)
    if isinstance(properties.get("ipAddress"), dict):
        properties["ipAddress"].pop("ip", None)
    identity = spec.get("identity")
    if isinstance(identity, dict):
        identity.pop("principalId", None)
        identity.pop("tenantId", None)
        if identity.get("userAssignedIdentities"):
            identity["userAssignedIdentities"] = {k: {} for k in identity["userAssignedIdentities"]}
    return spec


def to_consumer(group: Mapping[str, Any]) -> Consumer | None:
    properties = group.get("properties") or {}
    encryption = properties.get("encryptionProperties")
    if not encryption:
        return None
    try:
        key = key_from_parts(
            encryption.get("vaultBaseUrl"), encryption.get("keyName"), encryption.get("keyVersion")
        )
        resource_id = parse_resource_id(group.get("id", ""), (CONTAINER_GROUP,))
    except InvalidId:
        return None
    identity = encryption.get("identity")
    group_identity = group.get("identity") or {}
    assigned = {i.lower() for i in (group_identity.get("userAssignedIdentities") or {})}
    # without encryptionProperties.identity the service uses its own first-party principal
    # (the ACI docs grant Key Vault access to it): a valid setup, nothing for the group to hold
    identity_ok = identity.lower() in assigned if identity else True
    identity = identity or ACI_SERVICE_PRINCIPAL
    return Consumer(
        kind="containergroup",
        resource_id=resource_id,
        key=key,
        location=group.get("location", ""),
        tags=dict(group.get("tags") or {}),
        identity=identity,
        identity_assigned=identity_ok,
        reconstructible=not secure_values_hidden(properties),
        provisioning_state=properties.get("provisioningState"),
    )


def saved_consumer(resource_id: ResourceId, saved: dict[str, Any]) -> Consumer | None:
    """The consumer a saved spec describes (its group is gone)."""
    spec = saved.get("spec") or {}
    consumer = to_consumer({**spec, "id": str(resource_id)})
    if consumer is None:
        return None
    return replace(consumer, reconstructible=True, provisioning_state="Deleted", recreate_from_saved=True)


def secure_values_block_redeploy(policy: str, consumer: Consumer) -> Decision | None:
    """Under `redeploy`, a group whose GET hides secure values cannot be rebuilt: never touched."""
    if policy == "redeploy" and not consumer.reconstructible:
        return Decision(
            BLOCKED,
            "spec-not-reconstructible",
            "its spec holds secure values a GET does not return; redeploy it from its source",
        )
    return None


def redeploy_required(policy: str, consumer: Consumer) -> Decision | None:
    """Under `report` (the default), every group is reported: a person redeploys it."""
    if policy == "redeploy":
        return None
    if not consumer.reconstructible:
        return Decision(
            REDEPLOY_REQUIRED,
            "report-only-policy",
            "a new key version means deleting and re-creating the group, and its spec holds secure "
            "values a GET does not return: redeploy it by hand from its source, with those values",
        )
    return Decision(
        REDEPLOY_REQUIRED,
        "report-only-policy",
        f"a new key version means deleting and re-creating the group; policy is "
        f"'{policy}' (set ROTATION_CONTAINER_GROUP_POLICY=redeploy to automate)",
    )


POLICIES = ("report", "redeploy")


def spec_blob_name(resource_id: ResourceId) -> str:
    return str(resource_id).lstrip("/") + ".json"


class ContainerGroups(KindDefaults):
    kind = "containergroup"
    resource_type = CONTAINER_GROUP
    arm_actions: tuple[str, ...] = (
        "Microsoft.ContainerInstance/containerGroups/read",
    )  # read only under `report`
    # Only with the redeploy policy: delete and re-create a group, and follow both operations;
    # a group in a virtual network also needs to join its subnet again.
    redeploy_actions = (
        "Microsoft.ContainerInstance/containerGroups/write",
        "Microsoft.ContainerInstance/containerGroups/delete",
        "Microsoft.ContainerInstance/locations/operationResults/read",
        "Microsoft.ContainerInstance/locations/operations/read",
    )
    subnet_actions = ("Microsoft.Network/virtualNetworks/subnets/join/action",)
    api_version = "2023-05-01"  # what the pinned azure-mgmt-containerinstance client sends (tested)
    key_naming = KEY_PARTS  # encryptionProperties.{vaultBaseUrl, keyName, keyVersion}
    recreates_missing = True  # a redeploy interrupted after the delete is finished from the saved spec
    pending_store = REDEPLOY_CONTAINER
    hints = (
        Hint(
            400,
            None,
            "The container group could not be created with the key: check its identity is assigned and can "
            "use the key; the saved spec is in the rotation-redeploy container.",
        ),
    )

    def __init__(self, policy: str = "report") -> None:
        if policy not in POLICIES:
            raise ValueError(f"container-group policy must be one of {POLICIES}, not {policy!r}")
        # ROTATION_CONTAINER_GROUP_POLICY: `report` (a person redeploys) or `redeploy`.
        self.policy = policy
        self.plan_checks = (self._secure_values_block_redeploy, self._redeploy_required)

    def _secure_values_block_redeploy(self, consumer: Consumer, _ctx: PolicyContext) -> Decision | None:
        return secure_values_block_redeploy(self.policy, consumer)

    def _redeploy_required(self, consumer: Consumer, _ctx: PolicyContext) -> Decision | None:
        return redeploy_required(self.policy, consumer)

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer | Unreadable]:
        # The list as ARM sends it, like `read`: the typed SDK would build a model of every
        # group's whole spec only for it to be serialized back (about 2 ms of CPU a group).
        groups = clients.arm().list_by_subscription(subscription, self.resource_type, self.api_version)
        return each_read(self.kind, groups, lambda group: one(to_consumer(group)))

    def _get_raw(self, clients: Clients, resource_id: ResourceId) -> dict[str, Any] | None:
        operations = clients.container_instances(resource_id.subscription).container_groups
        try:
            raw = operations.get(resource_id.resource_group, resource_id.name, cls=_raw)
        except ResourceNotFoundError:
            return None
        return cast("dict[str, Any]", raw)  # `_raw` hands back the JSON, not the SDK model

    def read(self, clients: Clients, resource_id: ResourceId) -> Consumer | None:
        group = self._get_raw(clients, resource_id)
        return to_consumer(group) if group else None

    # -- redeploy ---------------------------------------------------------------------------
    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        resource_id = consumer.resource_id
        group = self._get_raw(clients, resource_id)
        if group is None:
            saved = load_saved_spec(clients, resource_id)
            if saved is None:
                raise ResourceNotFoundError(
                    f"container group {resource_id} no longer exists and no spec is saved"
                )
            return self._create(clients, resource_id, saved["spec"], to_key)
        current = to_consumer(group)
        if current is not None and is_busy(current):
            raise TransientCondition(f"container group is {current.provisioning_state}")
        hidden = secure_values_hidden(group.get("properties") or {})
        if hidden:
            raise SpecNotReconstructible("spec-not-reconstructible: " + "; ".join(hidden))
        spec = creatable_spec(group)
        save_spec(clients, resource_id, spec, consumer.key, to_key, context)
        self._delete(clients, resource_id, context.deadline)
        return self._create(clients, resource_id, spec, to_key)

    def _delete(self, clients: Clients, resource_id: ResourceId, deadline: Deadline | None) -> None:
        operations = clients.container_instances(resource_id.subscription).container_groups
        try:
            deleting = operations.begin_delete(resource_id.resource_group, resource_id.name)
            waits.for_poller(deleting)
            deleting.result()
        except HttpResponseError as exc:
            # Unclear outcome: look before deciding. Gone means the delete happened.
            if self._get_raw(clients, resource_id) is not None:
                raise
            log.info(
                "delete of %s reported %s but the group is gone; continuing",
                resource_id,
                classify(exc).summary(),
            )
            self._wait_gone(clients, resource_id, deadline)

    def _wait_gone(self, clients: Clients, resource_id: ResourceId, deadline: Deadline | None) -> None:
        """Poll until the group is gone, within the run's deadline (else at most five minutes)."""
        budget = deadline.remaining() if deadline is not None else 300.0
        waiting = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda group: group is not None),
            wait=tenacity.wait_fixed(min(2.0, clients.settings.poll_interval_seconds)),
            stop=tenacity.stop_before_delay(max(0.0, budget)),
            retry_error_callback=lambda _state: _still_there(resource_id),
            sleep=waits.sleep,
        )
        waiting(self._get_raw, clients, resource_id)

    def _create(
        self, clients: Clients, resource_id: ResourceId, spec: dict[str, Any], to_key: KeyRef
    ) -> Consumer | None:
        updated = copy.deepcopy(spec)  # `spec` stays as saved: the previous version, for a roll-back
        encryption = updated.setdefault("properties", {}).setdefault("encryptionProperties", {})
        encryption["keyVersion"] = to_key.version
        try:
            created = _put(clients, resource_id, updated)
            shown = to_consumer(created.serialize(keep_readonly=True)) if created is not None else None
        except HttpResponseError as exc:
            # Unclear outcome: if the group now exists on the new key, the create happened.
            shown = self.read(clients, resource_id)
            if shown is None and not classify(exc).transient:
                self._roll_back(clients, resource_id, spec, to_key, exc)
            if shown is None or shown.version != to_key.version:
                raise
        if shown is not None and has_failed(shown):
            return shown  # keep the saved spec; the caller reports the failure
        delete_saved_spec(clients, resource_id)
        return shown

    def _roll_back(
        self,
        clients: Clients,
        resource_id: ResourceId,
        spec: dict[str, Any],
        to_key: KeyRef,
        error: HttpResponseError,
    ) -> None:
        """The group cannot be created on the new version: bring it back on its previous one, so
        it is not left deleted. Raises RedeployRolledBack (the step failed, the group runs)."""
        previous = (spec.get("properties") or {}).get("encryptionProperties", {}).get("keyVersion")
        try:
            _put(clients, resource_id, spec)
        except HttpResponseError:
            raise error from None  # both failed: the spec stays saved for the next run
        delete_saved_spec(clients, resource_id)
        raise RedeployRolledBack(
            f"could not be re-created on {to_key.version} ({classify(error).summary()}); "
            f"re-created on its previous version {previous}"
        )

    def pending(self, clients: Clients, key: KeyRef) -> builtins.list[Consumer]:
        """Groups of this key that an interrupted redeploy deleted, described by their saved specs."""
        found = (
            saved_consumer(resource_id, saved) for resource_id, saved in self.pending_redeploys(clients, key)
        )
        return [consumer for consumer in found if consumer is not None]

    def pending_redeploys(
        self, clients: Clients, key: KeyRef
    ) -> builtins.list[tuple[ResourceId, dict[str, Any]]]:
        """Saved specs for this key whose group is missing: interrupted redeploys to finish first."""
        pending = []
        container = clients.blobs().get_container_client(REDEPLOY_CONTAINER)
        try:
            blobs = list(container.list_blobs(name_starts_with="subscriptions/"))
        except ResourceNotFoundError:
            return []
        for blob in blobs:
            try:
                saved = json.loads(container.download_blob(blob.name).readall())
                resource_id = parse_resource_id(saved["resourceId"], (CONTAINER_GROUP,))
                saved_key = KeyRef(**saved["key"])
            except (ValueError, KeyError, TypeError, InvalidId):
                log.warning("ignoring unreadable saved spec %s", blob.name)
                continue
            if saved_key.same_key(key) and self._get_raw(clients, resource_id) is None:
                pending.append((resource_id, saved))
        return pending


def _put(clients: Clients, resource_id: ResourceId, spec: dict[str, Any]) -> Any:
    """Create the group from `spec` and wait for it. Raw bytes: the PUT carries exactly the spec
    (the SDK model would drop properties it does not know)."""
    operations = clients.container_instances(resource_id.subscription).container_groups
    body = json.dumps(spec).encode()
    poller = operations.begin_create_or_update(  # type: ignore[call-overload]  # bytes are sent as they are
        resource_id.resource_group, resource_id.name, body, content_type="application/json"
    )
    waits.for_poller(poller)  # on the hub, the other targets go on while it runs
    return poller.result()


def _still_there(resource_id: ResourceId) -> None:
    raise TransientCondition(f"container group {resource_id} is still being deleted")


def save_spec(
    clients: Clients,
    resource_id: ResourceId,
    spec: dict[str, Any],
    from_key: KeyRef,
    to_key: KeyRef,
    context: ApplyContext,
) -> None:
    document = {
        "resourceId": str(resource_id),
        "key": {"vault_host": from_key.vault_host, "name": from_key.name},
        "fromVersion": from_key.version,
        "toVersion": to_key.version,
        "runId": context.run_id,
        "savedAt": utc_now(),
        "spec": spec,
    }
    clients.blobs().get_blob_client(REDEPLOY_CONTAINER, spec_blob_name(resource_id)).upload_blob(
        json.dumps(document).encode(), overwrite=True
    )


def load_saved_spec(clients: Clients, resource_id: ResourceId) -> dict[str, Any] | None:
    try:
        data = (
            clients.blobs().get_blob_client(REDEPLOY_CONTAINER, spec_blob_name(resource_id)).download_blob()
        )
        return json.loads(data.readall())
    except ResourceNotFoundError:
        return None


def delete_saved_spec(clients: Clients, resource_id: ResourceId) -> None:
    with contextlib.suppress(ResourceNotFoundError):
        clients.blobs().get_blob_client(REDEPLOY_CONTAINER, spec_blob_name(resource_id)).delete_blob()
