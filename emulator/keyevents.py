"""Key Vault's own events: `KeyNewVersionCreated` when a version is made, `KeyNearExpiry` when the
current version enters its near-expiry window, `KeyExpired` when it expires; published to the
vault's Event Grid system topic.

The window is the key's rotation policy `Notify` trigger (`timeBeforeExpiry`), else Key Vault's
default of 30 days. A version that is already near expiry when a scenario loads has not *entered*
the window while the emulator watched, so it fires nothing: the baseline is taken at load.

The emulator's clock: `advance(seconds)` moves every time in the estate (created, updated, nbf,
exp) that far into the past, which to any client reading the real clock is the same as time
passing; then it looks for versions that crossed a threshold.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .keyvault import iso_duration_seconds
from .state import Key, KeyVersion, Vault, World, now

NEW_VERSION = "Microsoft.KeyVault.KeyNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.KeyNearExpiry"
EXPIRED = "Microsoft.KeyVault.KeyExpired"
DEFAULT_WINDOW = 30 * 86400
TOPIC_RESOURCE_GROUP = "rg-security"  # vaults in a scenario carry no ARM id; the samples use this group

Publish = Callable[[str, dict[str, Any]], object]  # (vault name, event in Event Grid schema)


def event_time(epoch: float) -> str:
    """Event Grid's timestamp: seven fractional digits, Z."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def near_expiry_window(key: Key) -> int:
    for action in (key.rotation_policy or {}).get("lifetimeActions") or []:
        if str((action.get("action") or {}).get("type", "")).lower() == "notify":
            before = (action.get("trigger") or {}).get("timeBeforeExpiry")
            if before:
                return iso_duration_seconds(before)
    return DEFAULT_WINDOW


def _phase(key: Key, version: KeyVersion, moment: int) -> str:
    if version.exp is None:
        return "valid"
    if moment >= version.exp:
        return "expired"
    return "near" if moment >= version.exp - near_expiry_window(key) else "valid"


class KeyEvents:
    """Builds Key Vault events and watches expiry; `publish` hands each one to Event Grid."""

    def __init__(self, world: World, publish: Publish) -> None:
        self.world = world
        self.publish = publish
        self.offset = 0  # seconds the clock has been advanced
        self._phases: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def topic(self, vault: Vault) -> str:
        subscription = min(self.world.subscriptions) if self.world.subscriptions else str(uuid.UUID(int=0))
        return (
            f"/subscriptions/{subscription}/resourceGroups/{TOPIC_RESOURCE_GROUP}"
            f"/providers/Microsoft.KeyVault/vaults/{vault.name}"
        )

    def event(self, event_type: str, vault: Vault, key: Key, version: KeyVersion) -> dict[str, Any]:
        """One event in Event Grid schema, as Key Vault publishes it (NBF/EXP as strings)."""
        return {
            "id": str(uuid.uuid4()),
            "topic": self.topic(vault),
            "subject": key.name,
            "eventType": event_type,
            "eventTime": event_time(now()),
            "data": {
                "Id": f"https://{vault.name}.vault.azure.net/keys/{key.name}/{version.version}",
                "VaultName": vault.name,
                "ObjectType": "Key",
                "ObjectName": key.name,
                "Version": version.version,
                "NBF": None if version.nbf is None else str(version.nbf),
                "EXP": None if version.exp is None else str(version.exp),
            },
            "dataVersion": "1",
            "metadataVersion": "1",
        }

    # -- what Key Vault does -----------------------------------------------------------------
    def new_version(self, vault: Vault, key: Key, version: KeyVersion) -> None:
        """Called (under the world lock) when the data plane made a version."""
        with self._lock:
            self._phases[(vault.name, key.name.lower(), version.version)] = _phase(key, version, now())
        self.publish(vault.name, self.event(NEW_VERSION, vault, key, version))

    def baseline(self) -> None:
        """Remember every current version's phase without firing (after a scenario load)."""
        with self.world.lock, self._lock:
            moment = now()
            self._phases = {
                (vault.name, key.name.lower(), key.latest().version): _phase(key, key.latest(), moment)
                for vault in self.world.vaults.values()
                for key in vault.keys.values()
                if key.versions
            }

    def scan(self) -> list[dict[str, Any]]:
        """Fire near-expiry and expired events for current versions that crossed a threshold."""
        fired: list[tuple[str, dict[str, Any]]] = []
        with self.world.lock, self._lock:
            moment = now()
            for vault in self.world.vaults.values():
                for key in vault.keys.values():
                    if not key.versions:
                        continue
                    version = key.latest()
                    slot = (vault.name, key.name.lower(), version.version)
                    before, after = self._phases.get(slot, "valid"), _phase(key, version, moment)
                    self._phases[slot] = after
                    if before == after or not version.enabled:
                        continue
                    if before == "valid":  # a jump past both thresholds fires both, in order
                        fired.append((vault.name, self.event(NEAR_EXPIRY, vault, key, version)))
                    if after == "expired":
                        fired.append((vault.name, self.event(EXPIRED, vault, key, version)))
        for vault_name, event in fired:
            self.publish(vault_name, event)
        return [event for _, event in fired]

    def advance(self, seconds: int) -> list[dict[str, Any]]:
        """Move the emulator's clock forward; returns the expiry events that fired."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.world.lock:
            for vault in self.world.vaults.values():
                for key in vault.keys.values():
                    for version in key.versions:
                        version.created -= seconds
                        version.updated -= seconds
                        version.nbf = None if version.nbf is None else version.nbf - seconds
                        version.exp = None if version.exp is None else version.exp - seconds
        with self._lock:
            self.offset += seconds
        return self.scan()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            offset = self.offset
        return {"now": event_time(now() + offset), "advancedSeconds": offset}
