"""Microsoft.ContainerInstance/containerGroups (api-version 2023-05-01 shapes).

Like Azure: a GET never returns secure values (environment ``secureValue``, registry
passwords, Azure Files keys, secret volumes), and an existing group's
``encryptionProperties`` cannot change: only a newly created group takes a key. PUT and
DELETE are long-running operations.
"""

from __future__ import annotations

import builtins
import copy
from typing import Any

from .arm import ArmService, arm_error, identity_block, json_body, key_problem, not_found
from .http import Request, Response
from .state import ContainerGroup, World, arm_parts

NAMESPACE = "Microsoft.ContainerInstance"
TYPE = "Microsoft.ContainerInstance/containerGroups"
_ROOT = r"/subscriptions/(?P<sub>[^/]+)"
_GROUP = _ROOT + r"/resourceGroups/(?P<group>[^/]+)"
_ITEM = _GROUP + r"/providers/Microsoft\.ContainerInstance/containerGroups/(?P<name>[^/]+)"
# What the service sets or keeps apart: never part of the spec a PUT stores.
_SERVICE_PROPERTIES = frozenset({"provisioningState", "instanceView", "encryptionProperties"})
_ENVELOPE = frozenset({"id", "name", "type", "location", "tags", "identity", "properties"})
SPEC_FIELDS = (  # the spec fields the scenario format takes by name (others: its `properties`)
    "containers",
    "osType",
    "restartPolicy",
    "ipAddress",
    "imageRegistryCredentials",
    "volumes",
    "sku",
    "subnetIds",
    "initContainers",
    "diagnostics",
    "dnsConfig",
    "priority",
)


def strip_secure_values(spec: dict[str, Any]) -> dict[str, Any]:
    """What a GET shows of a spec: secure values removed, names kept."""
    shown = copy.deepcopy(spec)
    for container in [*shown.get("containers", []), *shown.get("initContainers", [])]:
        for variable in container.get("properties", {}).get("environmentVariables", []) or []:
            variable.pop("secureValue", None)
    for credential in shown.get("imageRegistryCredentials", []) or []:
        credential.pop("password", None)
    for volume in shown.get("volumes", []) or []:
        (volume.get("azureFile") or {}).pop("storageAccountKey", None)
        if "secret" in volume:
            volume["secret"] = {}
    ((shown.get("diagnostics") or {}).get("logAnalytics") or {}).pop("workspaceKey", None)
    for extension in shown.get("extensions", []) or []:  # kept since the PUT keeps it; secret
        (extension.get("properties") or {}).pop("protectedSettings", None)
    return shown


def _spec_problem(spec: dict[str, Any]) -> str | None:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return "A container group needs at least one container."
    for container in containers:
        properties = container.get("properties") or {}
        if not container.get("name") or not properties.get("image"):
            return "Every container needs a name and an image."
        requests = (properties.get("resources") or {}).get("requests") or {}
        if not requests.get("cpu") or not requests.get("memoryInGB"):
            return f"Container '{container.get('name')}' needs resources.requests.cpu and memoryInGB."
        for variable in properties.get("environmentVariables") or []:
            if "value" not in variable and "secureValue" not in variable:
                return (
                    f"The environment variable '{variable.get('name')}' of container '{container['name']}' "
                    "must have a value or a secureValue."
                )
    for credential in spec.get("imageRegistryCredentials") or []:
        if not credential.get("password") and not credential.get("identity"):
            return f"The image registry credential for '{credential.get('server')}' needs a password or an identity."
    for volume in spec.get("volumes") or []:
        azure_file = volume.get("azureFile")
        if azure_file is not None and not azure_file.get("storageAccountKey"):
            return f"The Azure Files volume '{volume.get('name')}' needs a storageAccountKey."
        if "secret" in volume and not all(volume["secret"].values()):
            return f"The secret volume '{volume.get('name')}' has entries without values."
    log_analytics = (spec.get("diagnostics") or {}).get("logAnalytics")
    if log_analytics is not None and not log_analytics.get("workspaceKey"):
        return "diagnostics.logAnalytics needs a workspaceKey."
    if spec.get("osType") not in ("Linux", "Windows"):
        return "osType must be Linux or Windows."
    return None


class ContainerGroups:
    def __init__(self, arm: ArmService) -> None:
        self.arm = arm
        self.world: World = arm.world
        arm.router.add("GET", _ROOT + r"/providers/Microsoft\.ContainerInstance/containerGroups", self.list)
        arm.router.add("GET", _GROUP + r"/providers/Microsoft\.ContainerInstance/containerGroups", self.list)
        arm.router.add("GET", _ITEM, self.get)
        arm.router.add("PUT", _ITEM, self.create_or_update)
        arm.router.add("DELETE", _ITEM, self.delete)

    @staticmethod
    def _id(sub: str, group: str, name: str) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{TYPE}/{name}"

    def render(self, group: ContainerGroup) -> dict[str, Any]:
        properties = strip_secure_values(group.spec)
        if "ipAddress" in properties:
            properties["ipAddress"].setdefault("ip", "20.50.0.10")
        properties["provisioningState"] = group.provisioning_state
        if group.encryption:
            properties["encryptionProperties"] = dict(group.encryption)
        properties["instanceView"] = {
            "state": "Running" if group.provisioning_state == "Succeeded" else "Pending",
            "events": [],
        }
        body: dict[str, Any] = {
            **copy.deepcopy(group.top),
            "id": group.id,
            "name": arm_parts(group.id)["name"],
            "type": TYPE,
            "location": group.location,
            "tags": dict(group.tags),
            "properties": properties,
        }
        identity = identity_block(self.world, group.identities, None)
        if identity:
            body["identity"] = identity
        return body

    def list(self, request: Request, sub: str, group: str | None = None) -> Response:
        with self.world.lock:
            items = [
                self.render(g)
                for g in self.world.container_groups.values()
                if arm_parts(g.id)["sub"].lower() == sub.lower()
                and (group is None or arm_parts(g.id)["rg"].lower() == group.lower())
            ]
        return self.arm.page(request, items)

    def get(self, request: Request, sub: str, group: str, name: str) -> Response:
        with self.world.lock:
            found = self.world.container_groups.get(self._id(sub, group, name).lower())
            if found is None:
                return not_found(TYPE, name, group)
            return Response.json(200, self.render(found))

    def create_or_update(self, request: Request, sub: str, group: str, name: str) -> Response:
        body = json_body(request)
        if isinstance(body, Response):
            return body
        resource_id = self._id(sub, group, name)
        properties = body.get("properties") or {}
        # Every property but the service's own, also those this emulator does not model
        # (extensions, confidentialComputeProperties, ...): Azure keeps them.
        spec = {k: copy.deepcopy(v) for k, v in properties.items() if k not in _SERVICE_PROPERTIES}
        top = {k: copy.deepcopy(v) for k, v in body.items() if k not in _ENVELOPE}
        encryption = properties.get("encryptionProperties")
        identity = body.get("identity") or {}
        identities = list((identity.get("userAssignedIdentities") or {}).keys())
        with self.world.lock:
            if (sub.lower(), group.lower()) not in self.world.resource_groups:
                return arm_error(
                    404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."
                )
            existing = self.world.container_groups.get(resource_id.lower())
            refused = self._refused(name, body, spec, identities, existing)
            if refused is not None:
                return refused
            if existing is not None:
                if _normalise(existing.encryption) != _normalise(encryption):
                    return arm_error(
                        409,
                        "ContainerGroupEncryptionUpdateNotSupported",
                        f"The encryption properties of container group '{name}' cannot be updated. "
                        "Delete the container group and create it again with the new key.",
                    )
                return self._update_in_place(request, existing, spec, body, identities, top)
            created = ContainerGroup(
                id=resource_id,
                location=body["location"],
                encryption=dict(encryption) if encryption else None,
                identities=identities,
                spec=spec,
                tags=dict(body.get("tags") or {}),
                provisioning_state="Creating",
                top=top,
            )
            self.world.container_groups[resource_id.lower()] = created

            def apply() -> None:
                created.provisioning_state = "Succeeded"

            def revert() -> None:
                created.provisioning_state = "Failed"

            headers = self.arm.start_operation(
                request, resource_id, NAMESPACE, created.location, apply, revert
            )
            return Response.json(201, self.render(created), headers)

    def _refused(
        self,
        name: str,
        body: dict[str, Any],
        spec: dict[str, Any],
        identities: builtins.list[str],
        existing: ContainerGroup | None,
    ) -> Response | None:
        """ARM's refusal of a create or update (busy group, bad spec, no location, bad
        encryption or a key the group cannot use); None to go ahead. Caller holds world.lock."""
        encryption = (body.get("properties") or {}).get("encryptionProperties")
        if existing is not None and (
            existing.provisioning_state in ("Deleting", "Creating") or self.arm.operations.busy(existing.id)
        ):
            return arm_error(
                409,
                "ContainerGroupTransitioning",
                f"The container group '{name}' is {existing.provisioning_state.lower()}; retry "
                "when the operation has finished.",
            )
        problem = _spec_problem(spec)
        if problem:
            return arm_error(400, "InvalidContainerGroupSpec", problem)
        if not body.get("location"):
            return arm_error(
                400, "LocationRequired", "The location property is required for this definition."
            )
        if encryption:
            missing = [k for k in ("vaultBaseUrl", "keyName", "keyVersion") if not encryption.get(k)]
            if missing:
                return arm_error(400, "InvalidEncryptionProperties", f"encryptionProperties needs {missing}.")
            if encryption.get("identity") and encryption["identity"].lower() not in {
                i.lower() for i in identities
            }:
                return arm_error(
                    400,
                    "InvalidEncryptionIdentity",
                    f"The identity '{encryption['identity']}' in encryptionProperties is not "
                    "assigned to the container group.",
                )
            key_url = f"{encryption['vaultBaseUrl'].rstrip('/')}/keys/{encryption['keyName']}/{encryption['keyVersion']}"
            encryption_identity = encryption.get("identity")
            names = (
                (encryption_identity, self.world.identity(encryption_identity).principal_id)
                if encryption_identity
                else ()
            )
            problem = key_problem(self.world, key_url, need_version=True, identities=names)
            if problem:
                return arm_error(400, "InvalidEncryptionKey", problem)
        return None

    def _update_in_place(
        self,
        request: Request,
        existing: ContainerGroup,
        spec: dict[str, Any],
        body: dict[str, Any],
        identities: builtins.list[str],  # `list` here is this class's method
        top: dict[str, Any],
    ) -> Response:
        previous = existing.provisioning_state

        def apply() -> None:
            existing.spec, existing.identities, existing.top = spec, identities, top
            existing.tags = dict(body.get("tags") or {})
            existing.provisioning_state = "Succeeded"

        def revert() -> None:
            existing.provisioning_state = previous

        existing.provisioning_state = "Updating"
        headers = self.arm.start_operation(request, existing.id, NAMESPACE, existing.location, apply, revert)
        return Response.json(200, self.render(existing), headers)

    def delete(self, request: Request, sub: str, group: str, name: str) -> Response:
        resource_id = self._id(sub, group, name)
        with self.world.lock:
            existing = self.world.container_groups.get(resource_id.lower())
            if existing is None:
                return Response.empty(204)
            if self.arm.operations.busy(existing.id):
                return arm_error(
                    409,
                    "ContainerGroupTransitioning",
                    f"The container group '{name}' has an operation in progress.",
                )
            previous = existing.provisioning_state
            existing.provisioning_state = "Deleting"

            def apply() -> None:
                self.world.container_groups.pop(resource_id.lower(), None)

            def revert() -> None:
                existing.provisioning_state = previous

            headers = self.arm.start_operation(
                request, existing.id, NAMESPACE, existing.location, apply, revert
            )
            return Response.empty(202, headers)


def _normalise(encryption: dict[str, Any] | None) -> tuple[str, ...] | None:
    if not encryption:
        return None
    return (
        encryption.get("vaultBaseUrl", "").rstrip("/").lower(),
        encryption.get("keyName", "").lower(),
        encryption.get("keyVersion", "").lower(),
        (encryption.get("identity") or "").lower(),
    )
