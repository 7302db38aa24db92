"""What to do with one consumer: a chain of small pure checks, evaluated in order until one
decides, then the consumer kind's own checks (`plan_checks`). Each returns an action (DESIGN.md section 7), a machine-readable reason and a
sentence for people; the audit trail and the CLI output come straight from these."""

from __future__ import annotations

from collections.abc import Sequence

from rotation.model.consumer import Consumer

# The vocabulary (actions, reasons, Decision, PolicyContext) is a value in the model, so a
# consumer kind's own plan checks can use it.
from rotation.model.decisions import (
    ALREADY_CURRENT,
    AUTO_ROTATING,
    BLOCKED,
    NEWER_THAN_DESIRED,
    OPTED_OUT,
    UPDATE,
    Check,
    Decision,
    PolicyContext,
)


def outside_subscriptions(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    """A discovered id is checked like a requested one: a list answer may name a resource in a
    subscription this system was not given (a broken or hostile answer); it is never written."""
    subscription = consumer.resource_id.subscription.lower()
    if ctx.subscriptions is None or subscription in ctx.subscriptions:
        return None
    return Decision(
        BLOCKED,
        "subscription-not-allowed",
        f"in subscription {subscription}, which is not in ROTATION_SUBSCRIPTIONS (an ARM list answer "
        "named it): never written",
    )


def opted_out(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    for name, value in consumer.tags.items():
        if name.lower() == ctx.opt_out_tag.lower() and str(value).strip().lower() == "off":
            return Decision(OPTED_OUT, "opt-out-tag", f"tagged {name}={value}: never touched")
    return None


def interrupted_redeploy(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    """A resource an interrupted redeploy deleted (its kind found it by a saved spec): bring it
    back first, whatever else would be said about it."""
    if not consumer.recreate_from_saved:
        return None
    if ctx.state.desired is None:
        return Decision(
            BLOCKED,
            ctx.state.blocked_reason or "version-disabled",
            "deleted by an interrupted redeploy, and the key has no usable version to re-create it with",
        )
    return Decision(
        UPDATE,
        "finish-interrupted-redeploy",
        "deleted by an interrupted redeploy; re-creating it from the saved spec",
    )


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
    if ctx.state.desired is not None and consumer.version == ctx.state.desired.version:
        return Decision(ALREADY_CURRENT, "on-desired-version", "already on the desired version")
    return None


def newer_than_desired(consumer: Consumer, ctx: PolicyContext) -> Decision | None:
    current, desired = ctx.state.version(consumer.version), ctx.state.desired
    if current is not None and desired is not None and ctx.state.is_newer(current, desired):
        problem = current.time_problem(ctx.now) or current.crypto_problem() or "not usable"
        return Decision(
            NEWER_THAN_DESIRED,
            "never-downgrade",
            f"on {current.version}, newer than the desired {desired.version} "
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
    outside_subscriptions,
    opted_out,
    interrupted_redeploy,
    auto_rotating,
    no_usable_version,
    already_current,
    # Before never-downgrade: a disabled version is someone's decision even when it is newer
    # (DESIGN.md sections 2.4 and 7), not a version to wait on.
    current_version_disabled,
    newer_than_desired,
    identity_not_assigned,
)


def decide(consumer: Consumer, ctx: PolicyContext, kind_checks: Sequence[Check] = ()) -> Decision:
    """The first check that decides, the common chain first, then the consumer kind's own."""
    for check in (*CHAIN, *kind_checks):
        decision = check(consumer, ctx)
        if decision is not None:
            return _with_notes(consumer, decision)
    return _with_notes(consumer, update(consumer, ctx))


def _with_notes(consumer: Consumer, decision: Decision) -> Decision:
    """The step says what its kind adds: for a blocked step, what the service does meanwhile (a
    PostgreSQL server goes Inaccessible soon after its version is disabled or expires); for any
    step, a rule this system keeps for it (MySQL: no expiry on its key)."""
    blocked = consumer.extra.get("blockedNote") if decision.action == BLOCKED else None
    notes = [n for n in (blocked, consumer.extra.get("note")) if n]
    if not notes:
        return decision
    return Decision(decision.action, decision.reason, ". ".join([decision.message, *notes]))
