"""The allow-list a request must stay inside (ROTATION_ALLOWED_VAULTS, ROTATION_SUBSCRIPTIONS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotation.model.ids import parse_resource_id

if TYPE_CHECKING:
    from rotation.config import Settings
    from rotation.model.request import RotationRequest


def not_allowed(request: RotationRequest, settings: Settings) -> str | None:
    """Why configuration forbids this request (None: allowed). Checked at every door and again
    before a run, so a queued, replayed or stale request cannot reach beyond the settings."""
    key = request.key
    if not settings.vault_allowed(key.vault_host):
        return f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS"
    for target in request.targets or ():
        subscription = parse_resource_id(target, None).subscription  # checked when decoded
        if subscription not in settings.subscriptions:
            return (
                f"target {target} is in subscription {subscription}, which is not in ROTATION_SUBSCRIPTIONS"
            )
    return None
