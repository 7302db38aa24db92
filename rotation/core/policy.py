"""What to do with one consumer: a chain of small pure checks, evaluated in order until one
decides. Each returns an action (DESIGN.md section 7), a machine-readable reason and a
sentence for people; the audit trail and the CLI output come straight from these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from rotation.azure.kinds import Consumer
from rotation.azure.vault import KeyState

UPDATE = "update"
ALREADY_CURRENT = "already-current"
AUTO_ROTATING = "auto-rotating"
NEWER_THAN_DESIRED = "newer-than-desired"
OPTED_OUT = "opted-out"
REDEPLOY_REQUIRED = "redeploy-required"
MANUAL_REQUIRED = "manual-required"  # seen, never written (an AKS KMS key): the message gives the commands
BLOCKED = "blocked"
ACTIONS = (
    UPDATE,
    ALREADY_CURRENT,
    AUTO_ROTATING,
    NEWER_THAN_DESIRED,
    OPTED_OUT,
    REDEPLOY_REQUIRED,
    MANUAL_REQUIRED,
    BLOCKED,
)
NEEDS_PERSON = (BLOCKED, NEWER_THAN_DESIRED, REDEPLOY_REQUIRED, MANUAL_REQUIRED)
BLOCKED_REASONS = (
    "version-disabled",
    "version-expired",
    "version-not-yet-valid",
    "key-type-unsupported",
    "key-ops-missing",
    "identity-not-assigned",
    "spec-not-reconstructible",
    "current-version-disabled",
)


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    message: str


@dataclass(frozen=True)
class PolicyContext:
    state: KeyState
    now: datetime
    container_group_policy: str = "report"
    opt_out_tag: str = "cmk-rotation"


Check = Callable[[Consumer, PolicyContext], Decision | None]


def opted_out(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    for name, value in consumer.tags.items():
        if name.lower() == ctx.opt_out_tag.lower() and str(value).strip().lower() == "off":
            return Decision(OPTED_OUT, "opt-out-tag", f"tagged {name}={value}: never touched")
    return None


def auto_rotating(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if not consumer.follows_new_versions:
        return None
    if consumer.version is None:
        return Decision(
            AUTO_ROTATING,
            "versionless-key-id",
            "uses a versionless key id: Azure moves it to new versions itself",
        )
    return Decision(
        AUTO_ROTATING,
        "auto-rotation-enabled",
        "its service's automatic key rotation is on: Azure moves it to new versions itself",
    )


def no_usable_version(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if ctx.state.desired is None:
        reason = ctx.state.blocked_reason or "version-disabled"
        return Decision(
            BLOCKED, reason, f"the key has no usable version (newest: {reason}); nothing to move to"
        )
    return None


def already_current(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.version == ctx.state.desired.version:
        return Decision(ALREADY_CURRENT, "on-desired-version", "already on the desired version")
    return None


def newer_than_desired(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    current = ctx.state.version(consumer.version)
    if current is not None and ctx.state.is_newer(current, ctx.state.desired):
        problem = current.time_problem(ctx.now) or current.crypto_problem() or "not usable"
        return Decision(
            NEWER_THAN_DESIRED,
            "never-downgrade",
            f"on {current.version}, newer than the desired {ctx.state.desired.version} "
            f"({problem}); not downgraded, needs a person",
        )
    return None


def current_version_disabled(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    current = ctx.state.version(consumer.version)
    if current is not None and not current.enabled:
        return Decision(
            BLOCKED,
            "current-version-disabled",
            f"its version {current.version} was disabled, presumably on purpose; a person decides",
        )
    return None


def identity_not_assigned(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if not consumer.identity_assigned:
        who = consumer.identity or "no identity"
        return Decision(
            BLOCKED,
            "identity-not-assigned",
            f"the identity it uses for the key ({who}) is not assigned to it; an update would fail",
        )
    return None


def spec_not_reconstructible(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.kind == "containergroup" and not consumer.reconstructible:
        return Decision(
            BLOCKED,
            "spec-not-reconstructible",
            "its spec holds secure values a GET does not return; redeploy it from its source",
        )
    return None


def redeploy_required(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    if consumer.kind == "containergroup" and ctx.container_group_policy != "redeploy":
        return Decision(
            REDEPLOY_REQUIRED,
            "report-only-policy",
            f"a new key version means deleting and re-creating the group; policy is "
            f"'{ctx.container_group_policy}' (set ROTATION_CONTAINER_GROUP_POLICY=redeploy to automate)",
        )
    return None


def update(consumer: Consumer, ctx: PolicyContext) -> Decision:
    current = ctx.state.version(consumer.version)
    if current is None:
        return Decision(
            UPDATE,
            "current-version-unknown",
            "its version is not among the key's versions; moving it to the desired version",
        )
    if current.time_problem(ctx.now) == "version-expired":
        return Decision(
            UPDATE,
            "current-version-expired",
            "INCIDENT: still on an expired version; moving it to the desired version",
        )
    return Decision(UPDATE, "behind-desired", "behind the desired version")


CHAIN: tuple[Check, ...] = (
    opted_out,
    auto_rotating,
    no_usable_version,
    already_current,
    newer_than_desired,
    current_version_disabled,
    identity_not_assigned,
    spec_not_reconstructible,
    redeploy_required,
)


def decide(consumer: Consumer, ctx: PolicyContext, kind_checks: Sequence[Check] = ()) -> Decision:
    """The first check that decides, the common chain first, then the consumer kind's own."""
    for check in (*CHAIN, *kind_checks):
        decision = check(consumer, ctx)
        if decision is not None:
            return decision
    return update(consumer, ctx)
