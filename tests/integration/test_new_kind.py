"""A consumer kind is one module behind the protocol: this one lives in this test file only.

It reads and writes registries through the generic ARM client (no typed SDK), does not
inherit the protocol's defaults class, declares its own plan check, hint and api-version, and
is handed to the Reconciler in place of the built-in kinds. Nothing in rotation/ names it; the
same module in rotation/azure/kinds/ plus one line in `all_kinds()` would make it real, and
tests/unit/test_kind_completeness.py would then ask for the rest (docs/architecture.md, "Adding
a consumer kind").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rotation.azure.clients import Clients
from rotation.azure.kinds import ApplyContext
from rotation.model.consumer import Consumer
from rotation.model.decisions import MANUAL_REQUIRED, Check, Decision, PolicyContext
from rotation.model.errors import Hint
from rotation.model.ids import REGISTRY, InvalidId, KeyRef, ResourceId, parse_key_id, parse_resource_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from rotation.run.reconcile import Reconciler
from tests import scenarios as s

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")


def legacy_is_manual(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.tags.get("legacy") == "true":
        return Decision(MANUAL_REQUIRED, "legacy-registry", "run: az acr encryption rotate-key ...")
    return None


def to_consumer(resource: dict[str, Any]) -> Consumer | None:
    vault = ((resource.get("properties") or {}).get("encryption") or {}).get("keyVaultProperties") or {}
    try:
        key = parse_key_id(vault.get("keyIdentifier") or "")
        resource_id = parse_resource_id(resource.get("id", ""), (REGISTRY,))
    except InvalidId:
        return None
    return Consumer(
        "acr-generic",
        resource_id,
        key,
        resource.get("location", ""),
        tags=dict(resource.get("tags") or {}),
        identity=vault.get("identity"),
        extra={"seenBy": "arm"},
    )


class GenericRegistries:
    kind = "acr-generic"
    resource_type = REGISTRY
    arm_actions = (
        "Microsoft.ContainerRegistry/registries/read",
        "Microsoft.ContainerRegistry/registries/write",
    )
    api_version = "2023-07-01"
    plan_checks: tuple[Check, ...] = (legacy_is_manual,)
    hints = (Hint(400, None, "Generic registries: give the identity access to the key."),)

    def list(self, clients: Clients, subscription: str) -> Iterator[Consumer]:
        for resource in clients.arm().list_by_subscription(
            subscription, self.resource_type, self.api_version
        ):
            consumer = to_consumer(resource)
            if consumer is not None:
                yield consumer

    def read(self, clients: Clients, resource_id: ResourceId) -> Consumer | None:
        resource = clients.arm().get(str(resource_id), self.api_version)
        return to_consumer(resource) if resource else None

    def apply(
        self, clients: Clients, consumer: Consumer, to_key: KeyRef, context: ApplyContext
    ) -> Consumer | None:
        body = {
            "properties": {
                "encryption": {
                    "keyVaultProperties": {"keyIdentifier": to_key.id, "identity": consumer.identity}
                }
            }
        }
        shown = clients.arm().begin_patch(str(consumer.resource_id), self.api_version, body).result()
        return to_consumer(shown) if shown else None


def run(stack, **fields: Any) -> RunResult:
    service = stack.service()
    reconciler = Reconciler(
        service.settings, service.clients, audit=service.audit, runs=service.runs, kinds=[GenericRegistries()]
    )
    return reconciler.run(new_request(parse_key_id(s.key_id("acr-cmk")), "cli", "pytest", **fields))


def estate() -> dict[str, Any]:
    return s.scenario(
        {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
        registries=[
            s.registry("plain", s.key_id("acr-cmk", OLD)),
            s.registry("legacy", s.key_id("acr-cmk", OLD), tags={"legacy": "true"}),
            s.registry("other", s.key_id("acr-cmk", OLD), identity=s.identity_id("uai-gone"), identities=[]),
        ],
    )


def test_a_kind_known_only_through_the_protocol_is_planned_applied_and_verified(stack) -> None:
    stack.load(estate())
    result = run(stack)
    by_name = {step.target.rsplit("/", 1)[1]: step for step in result.steps}
    assert {st.kind for st in result.steps} == {"acr-generic"}
    assert (by_name["plain"].action, by_name["plain"].outcome) == ("update", "verified")
    assert (by_name["legacy"].action, by_name["legacy"].reason) == ("manual-required", "legacy-registry")
    # the service refuses the write; the kind's own hint says what to do
    assert by_name["other"].outcome == "failed"
    assert by_name["other"].hint == "Generic registries: give the identity access to the key."
    assert result.exit_code == 4
    keys = {r["id"].rsplit("/", 1)[1]: r["keyId"] for r in stack.admin.state()["registries"]}
    assert keys["plain"].endswith(NEW) and keys["legacy"].endswith(OLD)
    patches = [c for c in stack.admin.calls()["calls"] if c["method"] == "PATCH"]
    assert {c["path"].rsplit("/", 1)[1] for c in patches} == {"plain", "other"}


def test_the_kind_reads_requested_targets_and_a_second_run_writes_nothing(stack) -> None:
    stack.load(estate())
    first = run(stack, targets=(s.registry_id("plain"),))
    assert [st.outcome for st in first.steps] == ["verified"]
    stack.admin.clear_calls()
    second = run(stack, targets=(s.registry_id("plain"),))
    assert [(st.action, st.outcome) for st in second.steps] == [("already-current", "skipped")]
    assert [c for c in stack.admin.calls()["calls"] if c["method"] == "PATCH"] == []
