"""A registry's encryption identity in every form `keyVaultProperties.identity` takes: a
user-assigned identity's client id, and ACR's reserved word `system` for the system-assigned
identity (what `az acr encryption rotate-key --identity [system]` writes)."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")


def acr_key() -> dict[str, Any]:
    return s.key(s.version("old", created="-300d"), s.version("new", created="-1h"))


def test_a_registry_reaching_its_key_with_its_system_identity_is_rotated(stack) -> None:
    system = {**s.registry("regsys", s.key_id("acr-cmk", OLD)), "encryptionIdentity": "SystemAssigned"}
    user = s.registry("reguser", s.key_id("acr-cmk", OLD))
    stack.load(s.scenario({"acr-cmk": acr_key()}, registries=[system, user]))
    listed = stack.service().clients.arm().get(s.registry_id("regsys"), "2025-11-01")
    assert listed["properties"]["encryption"]["keyVaultProperties"]["identity"] == "system"
    result = stack.service().reconciler.run(new_request(parse_key_id(s.key_id("acr-cmk")), "cli", "pytest"))
    outcomes = {step.target.rsplit("/", 1)[1]: (step.action, step.outcome) for step in result.steps}
    assert outcomes == {"regsys": ("update", "verified"), "reguser": ("update", "verified")}
    patches = [c for c in stack.admin.calls()["calls"] if c["method"] == "PATCH"]
    assert len(patches) == 2
    state = {r["id"].rsplit("/", 1)[1]: r for r in stack.admin.state()["registries"]}
    assert state["regsys"]["keyId"] == s.key_id("acr-cmk", NEW)
    assert state["regsys"]["encryptionIdentity"] == "SystemAssigned"
