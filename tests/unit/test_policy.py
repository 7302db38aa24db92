"""The planning chain: each check alone, and the order that makes the policy."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.azure.kinds import Consumer, all_kinds
from rotation.azure.kinds.containergroup import ContainerGroups
from rotation.config import load_settings
from rotation.model.decisions import ACTIONS, BLOCKED_REASONS, Check, Decision, PolicyContext
from rotation.model.ids import KeyRef, ResourceId
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run import policy

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


def consumer(kind: str = "registry", version: str | None = "b" * 32, **extra: Any) -> Consumer:
    rid = ResourceId(
        "00000000-0000-0000-0000-00000000000a", "rg", "Microsoft.ContainerRegistry", "registries", "r1"
    )
    return Consumer(kind, rid, KeyRef(KEY.vault_host, "k", version), "westeurope", **extra)


ENV = {
    "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
    "ROTATION_SUBSCRIPTIONS": "00000000-0000-0000-0000-00000000000a",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def context(key_state: KeyState | None = None) -> PolicyContext:
    return PolicyContext(key_state or state(), NOW, "cmk-rotation")


def kind_checks_for(kind: str, group_policy: str) -> tuple[Check, ...]:
    settings = load_settings({**ENV, "ROTATION_CONTAINER_GROUP_POLICY": group_policy})
    return next((k.plan_checks for k in all_kinds(settings) if k.kind == kind), ())


def decide(subject: Consumer, ctx: PolicyContext, group_policy: str = "report") -> Decision:
    """The whole policy for a consumer: the chain, then its kind's own checks (the container-group
    kind's with ROTATION_CONTAINER_GROUP_POLICY=`group_policy`)."""
    return policy.decide(subject, ctx, kind_checks_for(subject.kind, group_policy))


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

    def kind_check(c: Consumer, ctx: PolicyContext) -> Decision | None:
        calls.append(c.kind)
        return Decision("blocked", "key-type-unsupported", "this service cannot use the key")

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
    assert decide(consumer("containergroup"), context()).action == "redeploy-required"
    assert decide(consumer("containergroup"), context(), "redeploy").action == "update"
    decision = decide(consumer("containergroup", reconstructible=False), context(), "redeploy")
    assert (decision.action, decision.reason) == ("blocked", "spec-not-reconstructible")


def test_unknown_current_version_moves_to_desired() -> None:
    decision = policy.decide(consumer(version="e" * 32), context())
    assert (decision.action, decision.reason) == ("update", "current-version-unknown")


def test_every_blocked_reason_is_a_contract_reason() -> None:
    cases = [
        policy.decide(consumer(), context(state(desired=None, blocked="key-ops-missing"))),
        policy.decide(consumer(identity_assigned=False), context()),
        decide(consumer("containergroup", reconstructible=False), context(), "redeploy"),
        policy.decide(consumer(), context(state(OLD, version("b", 100, enabled=False), NEW))),
    ]
    assert all(d.action in ACTIONS for d in cases)
    assert {d.reason for d in cases} <= set(BLOCKED_REASONS)


# -- issue 9, defect 2: a disabled version is blocked even when it is newer than the desired one
def test_a_disabled_version_newer_than_the_desired_one_is_blocked() -> None:
    newest_disabled = version("d", 0, enabled=False)
    decision = policy.decide(consumer(version="d" * 32), context(state(OLD, MID, NEW, newest_disabled)))
    assert (decision.action, decision.reason) == ("blocked", "current-version-disabled")


# -- issue 9, defect 10: secure values under `report` are redeploy-required, said so
def test_a_group_with_secure_values_is_redeploy_required_under_report() -> None:
    decision = decide(consumer("containergroup", reconstructible=False), context())
    assert (decision.action, decision.reason) == ("redeploy-required", "report-only-policy")
    assert "secure values" in decision.message and "by hand" in decision.message
    plain = decide(consumer("containergroup"), context())
    assert "secure values" not in plain.message


# -- each check of the chain alone: it decides its own case and stays silent otherwise
DISABLED_MID = version("b", 100, enabled=False)
NEWER_UNUSABLE = version("d", 0, key_type="EC")


@pytest.mark.parametrize(
    ("check", "deciding", "silent", "expected"),
    [
        (
            "opted_out",
            (consumer(tags={"cmk-rotation": "off"}), context()),
            (consumer(), context()),
            "opted-out",
        ),
        (
            "auto_rotating",
            (consumer(version=None, follows_new_versions=True), context()),
            (consumer(), context()),
            "auto-rotating",
        ),
        (
            "no_usable_version",
            (consumer(), context(state(desired=None, blocked="version-expired"))),
            (consumer(), context()),
            "blocked:version-expired",
        ),
        (
            "already_current",
            (consumer(version="c" * 32), context()),
            (consumer(), context()),
            "already-current",
        ),
        (
            "current_version_disabled",
            (consumer(), context(state(OLD, DISABLED_MID, NEW))),
            (consumer(), context()),
            "blocked:current-version-disabled",
        ),
        (
            "newer_than_desired",
            (consumer(version="d" * 32), context(state(OLD, MID, NEW, NEWER_UNUSABLE))),
            (consumer(), context()),
            "newer-than-desired",
        ),
        (
            "identity_not_assigned",
            (consumer(identity_assigned=False), context()),
            (consumer(), context()),
            "blocked:identity-not-assigned",
        ),
    ],
)
def test_each_check_alone(check: str, deciding: tuple, silent: tuple, expected: str) -> None:
    function = getattr(policy, check)
    decision = function(*deciding)
    assert decision is not None
    assert (
        f"{decision.action}:{decision.reason}" if decision.action == "blocked" else decision.action
    ) == expected
    assert function(*silent) is None


def test_update_alone_names_why() -> None:
    assert policy.update(consumer(), context()).reason == "behind-desired"
    assert policy.update(consumer(version="a" * 32), context()).reason == "current-version-expired"
    assert policy.update(consumer(version="e" * 32), context()).reason == "current-version-unknown"


# -- the order: where two checks would both decide, the earlier one wins
@pytest.mark.parametrize(
    ("case", "subject", "ctx", "expected"),
    [
        (
            "opt-out beats auto-rotating",
            consumer(version=None, follows_new_versions=True, tags={"cmk-rotation": "off"}),
            context(),
            "opted-out",
        ),
        (
            "auto-rotating beats no usable version",
            consumer(version=None, follows_new_versions=True),
            context(state(desired=None, blocked="version-expired")),
            "auto-rotating",
        ),
        (
            "no usable version beats a disabled current",
            consumer(),
            context(state(OLD, DISABLED_MID, NEW, desired=None, blocked="version-disabled")),
            "blocked:version-disabled",
        ),
        (
            "disabled beats newer-than-desired",
            consumer(version="d" * 32),
            context(state(OLD, MID, NEW, version("d", 0, enabled=False))),
            "blocked:current-version-disabled",
        ),
        (
            "newer-than-desired beats identity",
            consumer(version="d" * 32, identity_assigned=False),
            context(state(OLD, MID, NEW, NEWER_UNUSABLE)),
            "newer-than-desired",
        ),
        (
            "identity beats redeploy-required",
            consumer("containergroup", identity_assigned=False),
            context(),
            "blocked:identity-not-assigned",
        ),
        (
            "secure values under report",
            consumer("containergroup", reconstructible=False),
            context(),
            "redeploy-required",
        ),
        (
            "already current beats identity",
            consumer(version="c" * 32, identity_assigned=False),
            context(),
            "already-current",
        ),
    ],
)
def test_the_order_of_the_chain(case: str, subject: Consumer, ctx: PolicyContext, expected: str) -> None:
    decision = decide(subject, ctx)
    assert (
        f"{decision.action}:{decision.reason}" if decision.action == "blocked" else decision.action
    ) == expected, case


def test_an_interrupted_redeploy_is_finished_first() -> None:
    gone = consumer("containergroup", recreate_from_saved=True, identity_assigned=False)
    assert (decide(gone, context()).action, decide(gone, context()).reason) == (
        "update",
        "finish-interrupted-redeploy",
    )
    no_version = decide(gone, context(state(desired=None, blocked="version-expired")))
    assert (no_version.action, no_version.reason) == ("blocked", "version-expired")
    assert decide(replace(gone, tags={"cmk-rotation": "off"}), context()).action == "opted-out"
    assert policy.interrupted_redeploy(consumer("containergroup"), context()) is None


# -- issue 24 item 1: the container-group policy is that kind's own setting, not the chain's
def test_the_container_group_policy_is_the_kinds_own_setting() -> None:
    assert "container_group_policy" not in {f.name for f in fields(PolicyContext)}
    redeploy = load_settings({**ENV, "ROTATION_CONTAINER_GROUP_POLICY": "redeploy"})
    assert {k.kind: getattr(k, "policy", None) for k in all_kinds(redeploy)}["containergroup"] == "redeploy"
    assert {k.kind: getattr(k, "policy", None) for k in all_kinds()}["containergroup"] == "report"
    with pytest.raises(ValueError, match="report"):
        ContainerGroups("delete")
