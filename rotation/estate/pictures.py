"""The numbers behind the per-key pictures (`inventory --summary`, `report`, `report --html`):
how many consumers hold each version of a key, how old the versions they hold are, and which
consumers follow new versions by themselves and which this system keeps current. Values only;
the terminal bars (doors/cli/render_estate.py) and the HTML page (doors/cli/report_page.py)
draw them. A versionless consumer holds the key's current version (the one its service uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotation.estate.inventory import KeyView, holders_by_version
from rotation.model.times import iso_or_none

# Age of the version a consumer holds, in days: (label, up to and including this many days).
AGE_BUCKETS = (
    ("0-30 d", 30),
    ("31-90 d", 90),
    ("91-180 d", 180),
    ("181-365 d", 365),
    ("over 365 d", None),
)
UNKNOWN_AGE = "unknown"  # outside vaults: never read, so no creation date


@dataclass(frozen=True)
class VersionBar:
    version: str
    consumers: int
    created: datetime | None
    desired: bool
    current: bool

    @property
    def label(self) -> str:
        marks = [m for m, on in (("desired", self.desired), ("current", self.current)) if on]
        return self.version[:8] + (f" ({', '.join(marks)})" if marks else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "consumers": self.consumers,
            "created": iso_or_none(self.created),
            "desired": self.desired,
            "current": self.current,
        }


@dataclass(frozen=True)
class KeyPicture:
    key_id: str
    name: str
    vault: str
    outside: bool
    consumers: int
    versions: tuple[VersionBar, ...]  # newest first: versions held, and the desired one
    ages: tuple[tuple[str, int], ...]  # (bucket label, consumers): every bucket; `unknown` if any
    follows: int  # consumers that move to new versions by themselves
    pinned: int  # consumers on a pinned version: moved by this system

    def to_dict(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "outside": self.outside,
            "consumers": self.consumers,
            "versions": [v.to_dict() for v in self.versions],
            "ages": [{"age": label, "consumers": n} for label, n in self.ages],
            "followsNewVersions": self.follows,
            "pinned": self.pinned,
        }


def picture(view: KeyView, now: datetime) -> KeyPicture:
    state = view.state
    held = holders_by_version(view.consumers, state)
    desired = state.desired.version if state and state.desired else None
    current = state.current_version if state else None
    bars = []
    for version, holders in held.items():
        info = state.version(version) if state else None
        bars.append(
            VersionBar(
                version, len(holders), info.created if info else None, version == desired, version == current
            )
        )
    if state and desired and desired not in held:  # the desired version, even when nobody holds it yet
        info = state.version(desired)
        bars.append(VersionBar(desired, 0, info.created if info else None, True, desired == current))
    bars.sort(key=lambda b: (b.created is not None, b.created or now), reverse=True)
    ages = {label: 0 for label, _ in AGE_BUCKETS} if state else {}  # outside: ages unknown
    for bar in bars:
        label = _bucket((now - bar.created).days) if bar.created else UNKNOWN_AGE
        ages[label] = ages.get(label, 0) + bar.consumers
    follows = sum(1 for c in view.consumers if c.follows_new_versions)
    return KeyPicture(
        view.key.versionless_id,
        view.key.name,
        view.key.vault_host,
        view.outside,
        len(view.consumers),
        tuple(bars),
        tuple(ages.items()),
        follows,
        len(view.consumers) - follows,
    )


def _bucket(days: int) -> str:
    for label, limit in AGE_BUCKETS:
        if limit is None or days <= limit:
            return label
    raise AssertionError("the last bucket has no limit")
