"""A key's versions as values: what Key Vault says about each version (attributes, type and
operations, never key material) and the state a run decides from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rotation.model.ids import KeyRef

USABLE_TYPES = ("RSA", "RSA-HSM")
REQUIRED_OPS = ("wrapKey", "unwrapKey")


@dataclass(frozen=True)
class VersionInfo:
    version: str
    enabled: bool
    created: datetime
    not_before: datetime | None
    expires: datetime | None
    key_type: str | None = None  # known only for versions read with get_key
    key_ops: tuple[str, ...] | None = None
    key_size: int | None = None  # RSA modulus bits, from the public JWK; known with key_type

    def time_problem(self, now: datetime) -> str | None:
        """Why this version cannot be used now, by its attributes alone (None: usable)."""
        if not self.enabled:
            return "version-disabled"
        if self.expires is not None and self.expires <= now:
            return "version-expired"
        if self.not_before is not None and self.not_before > now:
            return "version-not-yet-valid"
        return None

    def crypto_problem(self) -> str | None:
        if self.key_type is None:
            return None
        if self.key_type not in USABLE_TYPES:
            return "key-type-unsupported"
        if not set(REQUIRED_OPS) <= set(self.key_ops or ()):
            return "key-ops-missing"
        return None


@dataclass(frozen=True)
class KeyState:
    key: KeyRef  # versionless
    versions: tuple[VersionInfo, ...]  # oldest first
    current_version: str  # what Key Vault calls the key's current (latest) version
    desired: VersionInfo | None
    blocked_reason: str | None  # why there is no desired version
    recovery_level: str | None

    def version(self, version: str | None) -> VersionInfo | None:
        if not version:
            return None
        version = version.lower()
        return next((v for v in self.versions if v.version == version), None)

    @property
    def recoverable(self) -> bool:
        return bool(self.recovery_level) and "Recoverable" in (self.recovery_level or "")

    def is_newer(self, a: VersionInfo, b: VersionInfo) -> bool:
        """Whether `a` is newer than `b`: created later; on a tie, the current version wins."""
        return self._order(a) > self._order(b)

    def _order(self, info: VersionInfo) -> tuple[datetime, bool]:
        return (info.created, info.version == self.current_version)
