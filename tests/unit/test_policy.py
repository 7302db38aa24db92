"""The planning chain: each check alone, and the order that makes the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotation.azure.kinds import Consumer
from rotation.azure.vault import KeyState, VersionInfo
from rotation.core import policy
from rotation.model.ids import KeyRef, ResourceId

NOW = datetime(2026, 11, 23, tzinfo=UTC)
KEY = KeyRef("contoso-cmk.vault.azure.net", "k")


def version(
    tag: str,
    days_ago: int,
    *,
    enabled: bool = True,
    expires_in: int | None = 300,
    key_type: str | None = "RSA",
    ops: tuple[str, ...] | None = ("wrapKey", "unwrapKey"),
) -> VersionInfo:
    return VersionInfo(
        tag * 32,
        enabled,
        NOW - timedelta(days=days_ago),
        None,
        NOW + timedelta(days=expires_in) if expires_in is not None else None,
        key_type,
        ops,
    )


OLD, MID, NEW = version("a", 300, expires_in=-5), version("b", 100), version("c", 1)


def state(*versions: VersionInfo, desired: VersionInfo | None = NEW, blocked: str | None = None) -> KeyState:
    versions = versions or (OLD, MID, NEW)
    return KeyState(KEY, versions, versions[-1].version, desired, blocked, "Recoverable")


def consumer(kind: str = "registry", version: str | None = "b" * 32, **extra: object) -> Consumer:
    rid = ResourceId(
        "00000000-0000-0000-0000-00000000000a", "rg", "Microsoft.ContainerRegistry", "registries", "r1"
    )
    return Consumer(kind, rid, KeyRef(KEY.vault_host, "k", version), "westeurope", **extra)


def context(key_state: KeyState | None = None, group_policy: str = "report") -> policy.PolicyContext:
    return policy.PolicyContext(key_state or state(), NOW, group_policy, "cmk-rotation")


def test_update_when_behind() -> None:
    decision = policy.decide(consumer(), context())
    assert (decision.action, decision.reason) == ("update", "behind-desired")


def test_expired_current_version_is_an_incident_update() -> None:
    decision = policy.decide(consumer(version="a" * 32), context())
    assert (decision.action, decision.reason) == ("update", "current-version-expired")
    assert "INCIDENT" in decision.message


def test_already_current() -> None:
    assert policy.decide(consumer(version="c" * 32), context()).action == "already-current"


def test_opt_out_tag_wins_case_insensitively() -> None:
    decision = policy.decide(consumer(tags={"CMK-Rotation": "OFF"}), context())
    assert decision.action == "opted-out"
    assert policy.opted_out(consumer(tags={"cmk-rotation": "on"}), context()) is None


@pytest.mark.parametrize(("kind", "action"), [("registry", "auto-rotating"), ("batch", "auto-rotating")])
def test_versionless_registry_and_batch_follow_by_themselves(kind: str, action: str) -> None:
    follows = consumer(kind, version=None, follows_new_versions=True)
    assert policy.decide(follows, context()).action == action


def test_a_pinned_consumer_with_auto_rotation_on_is_left_to_azure() -> None:
    decision = policy.auto_rotating(consumer(follows_new_versions=True), context())
    assert decision is not None
    assert (decision.action, decision.reason) == ("auto-rotating", "auto-rotation-enabled")
    assert policy.auto_rotating(consumer(), context()) is None


def test_a_kinds_own_checks_run_after_the_chain_and_before_update() -> None:
    calls: list[str] = []

    def kind_check(c: Consumer, ctx: policy.PolicyContext) -> policy.Decision | None:
        calls.append(c.kind)
        return policy.Decision("blocked", "key-type-unsupported", "this service cannot use the key")

    assert policy.decide(consumer(), context(), (kind_check,)).reason == "key-type-unsupported"
    # an earlier check that decides wins, and the kind's check is never asked
    opted = consumer(tags={"cmk-rotation": "off"})
    assert policy.decide(opted, context(), (kind_check,)).action == "opted-out"
    assert calls == ["registry"]


def test_never_downgrade() -> None:
    newest_unusable = version("d", 0, key_type="EC")
    decision = policy.decide(consumer(version="d" * 32), context(state(OLD, MID, NEW, newest_unusable)))
    assert decision.action == "newer-than-desired" and "key-type-unsupported" in decision.message


def test_disabled_current_version_is_for_a_person() -> None:
    disabled_mid = version("b", 100, enabled=False)
    decision = policy.decide(consumer(), context(state(OLD, disabled_mid, NEW)))
    assert (decision.action, decision.reason) == ("blocked", "current-version-disabled")


def test_no_usable_version_blocks_with_the_newest_reason() -> None:
    decision = policy.decide(consumer(), context(state(desired=None, blocked="version-expired")))
    assert (decision.action, decision.reason) == ("blocked", "version-expired")


def test_identity_not_assigned_blocks() -> None:
    decision = policy.decide(consumer(identity="abc", identity_assigned=False), context())
    assert (decision.action, decision.reason) == ("blocked", "identity-not-assigned")


def test_container_groups_report_by_default_redeploy_when_allowed() -> None:
    assert policy.decide(consumer("containergroup"), context()).action == "redeploy-required"
    assert policy.decide(consumer("containergroup"), context(group_policy="redeploy")).action == "update"
    decision = policy.decide(
        consumer("containergroup", reconstructible=False), context(group_policy="redeploy")
    )
    assert (decision.action, decision.reason) == ("blocked", "spec-not-reconstructible")


def test_unknown_current_version_moves_to_desired() -> None:
    decision = policy.decide(consumer(version="e" * 32), context())
    assert (decision.action, decision.reason) == ("update", "current-version-unknown")


def test_every_blocked_reason_is_a_contract_reason() -> None:
    cases = [
        policy.decide(consumer(), context(state(desired=None, blocked="key-ops-missing"))),
        policy.decide(consumer(identity_assigned=False), context()),
        policy.decide(consumer("containergroup", reconstructible=False), context()),
        policy.decide(consumer(), context(state(OLD, version("b", 100, enabled=False), NEW))),
    ]
    assert all(d.action in policy.ACTIONS for d in cases)
    assert {d.reason for d in cases} <= set(policy.BLOCKED_REASONS)
