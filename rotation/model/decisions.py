"""The policy's vocabulary as values: plan actions and blocked reasons (DESIGN.md section 7),
a decision, and what the checks decide from. Consumer kinds' plan checks use these too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rotation.model.consumer import Consumer
from rotation.model.keystate import KeyState

UPDATE = "update"
ALREADY_CURRENT = "already-current"
AUTO_ROTATING = "auto-rotating"
NEWER_THAN_DESIRED = "newer-than-desired"
OPTED_OUT = "opted-out"
REDEPLOY_REQUIRED = "redeploy-required"
# Seen, never written (e.g. an AKS cluster's KMS key): the message gives the commands.
MANUAL_REQUIRED = "manual-required"
BLOCKED = "blocked"
# Actions whose consumer this system keeps on the desired version: the waves' gate checks these,
# and the report counts them as kept current by the system.
KEPT_CURRENT = (UPDATE, ALREADY_CURRENT)
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
    # An unexpected error reading or planning this one consumer (its data): the others go on.
    "unreadable",
    # Named by a list answer for an allowed subscription, but in another one: never written.
    "subscription-not-allowed",
)
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    message: str


@dataclass(frozen=True)
class PolicyContext:
    state: KeyState
    now: datetime
    opt_out_tag: str = "cmk-rotation"
    # ROTATION_SUBSCRIPTIONS (lower case); None: not checked (pure planning without settings)
    subscriptions: frozenset[str] | None = None


Check = Callable[[Consumer, PolicyContext], Decision | None]
