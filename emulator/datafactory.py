"""Microsoft.DataFactory/factories (api-version 2018-06-01 shapes, the spec's Factories_Get and
Factories_CreateOrUpdate examples): the key in `properties.encryption.{vaultBaseUrl, keyName,
keyVersion, identity.userAssignedIdentity}` (no identity: the factory's system-assigned one),
`eTag` in the body and the `ETag` header; the PUT answers 200 with the factory (not
long-running) and honours `If-Match` (emulator/documents.py)."""

from __future__ import annotations

from typing import Any

from .arm import arm_error
from .cmk import Refused, identity_names, key_url
from .documents import DocumentProvider
from .state import ArmDocument


class DataFactories(DocumentProvider):
    TYPE = "Microsoft.DataFactory/factories"
    NAMESPACE = "Microsoft.DataFactory"
    ETAG_FIELD = "eTag"
    READ_ONLY = ("provisioningState", "createTime", "version")

    def served(self, resource: ArmDocument, properties: dict[str, Any]) -> None:
        properties["createTime"] = "2026-01-05T09:12:44.0041314Z"
        properties["version"] = "2018-06-01"

    def keys_in(
        self, document: dict[str, Any], resource: ArmDocument
    ) -> list[tuple[str, tuple[str, ...], str]]:
        encryption = (document.get("properties") or {}).get("encryption")
        if not isinstance(encryption, dict):
            return []
        if not encryption.get("vaultBaseUrl") or not encryption.get("keyName"):
            raise Refused(arm_error(400, "BadRequest", "encryption needs vaultBaseUrl and keyName."))
        named = (encryption.get("identity") or {}).get("userAssignedIdentity")
        if named and str(named).lower() not in {i.lower() for i in resource.identities}:
            raise Refused(
                arm_error(400, "BadRequest", f"The identity '{named}' is not assigned to the factory.")
            )
        if not named and not resource.system_principal:
            raise Refused(
                arm_error(400, "BadRequest", "The factory has no managed identity to reach the key with.")
            )
        who = identity_names(
            self.world, [named] if named else [], None if named else resource.system_principal
        )
        url = key_url(encryption["vaultBaseUrl"], encryption["keyName"], encryption.get("keyVersion"))
        return [(url, who, "The factory")]
