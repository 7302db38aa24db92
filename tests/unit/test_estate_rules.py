"""Inventory filters, the report's reasons, retire candidates and a registry's own CMK status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotation.azure.kinds import Consumer, parse_target
from rotation.azure.kinds.registry import Registries
from rotation.estate.inventory import Filters, InvalidFilter, KeyView, holders_by_version
from rotation.estate.report import not_moved
from rotation.estate.retire import expiring_consumers, retire_candidates
from rotation.model.ids import parse_key_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run import waves

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = parse_key_id("https://contoso-cmk.vault.azure.net/keys/acr-cmk")
A, B, C = "a" * 32, "b" * 32, "c" * 32


def registry(name: str, version: str | None, **extra: object) -> Consumer:
    rid = parse_target(
        f"/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
    key = KEY.with_version(version) if version else KEY
    return Consumer("registry", rid, key, "westeurope", extra=extra)


def version(v: str, days_old: int, *, expires_in: int | None = 300, enabled: bool = True) -> VersionInfo:
    expires = NOW + timedelta(days=expires_in) if expires_in is not None else None
    return VersionInfo(
        v, enabled, NOW - timedelta(days=days_old), None, expires, "RSA", ("wrapKey", "unwrapKey")
    )


def state() -> KeyState:
    versions = (version(A, 400, expires_in=10), version(B, 200), version(C, 1))
    return KeyState(KEY, versions, C, versions[-1], None, "Recoverable")


def test_filters_are_validated() -> None:
    kinds = ["registry", "batch"]
    assert (
        Filters.parse(" Contoso-CMK.vault.azure.net ", None, "batch", kinds).vault
        == "contoso-cmk.vault.azure.net"
    )
    with pytest.raises(InvalidFilter, match="not a vault host"):
        Filters.parse("contoso cmk", None, None, kinds)
    with pytest.raises(InvalidFilter, match="registry"):
        Filters.parse(None, None, "toaster", kinds)
    only = Filters.parse(None, KEY.with_version(A), None, kinds)
    assert only.key == KEY and only.wants(registry("r", B))


def test_versionless_consumers_hold_the_current_version() -> None:
    held = holders_by_version([registry("r1", A), registry("r2", None), registry("r3", A)], state())
    assert {v: [c.resource_id.name for c in cs] for v, cs in held.items()} == {A: ["r1", "r3"], C: ["r2"]}


def test_retire_candidates_are_unheld_enabled_versions_older_than_desired() -> None:
    view = KeyView(KEY, (registry("r1", B),), False, state())
    assert [c["keyId"] for c in retire_candidates(view)] == [KEY.with_version(A).id]
    held_old = KeyView(KEY, (registry("r1", A),), False, state())
    assert [c["keyId"] for c in retire_candidates(held_old)] == [KEY.with_version(B).id]
    assert [c["resourceId"].rsplit("/", 1)[1] for c in expiring_consumers(held_old, NOW, 30)] == ["r1"]
    assert expiring_consumers(view, NOW, 30) == []


def test_report_says_why_a_consumer_has_not_moved() -> None:
    assert (
        not_moved("opted-out", "opt-out-tag", "tagged cmk-rotation=off", C)
        == "opted out (tagged cmk-rotation=off)"
    )
    assert not_moved("blocked", "identity-not-assigned", "m", C) == "blocked (identity-not-assigned): m"
    assert not_moved("newer-than-desired", "never-downgrade", "m", C).startswith("needs a person")
    assert not_moved("update", "behind-desired", "m", C) == f"behind: the next run moves it to {C}"
    assert "the key itself needs a new version" in not_moved("already-current", "on-desired-version", "m", C)


def test_registry_health_compares_the_version_acr_reports_using() -> None:
    kind = Registries()
    assert kind.healthy(registry("r", C, versionedKeyIdentifier=KEY.with_version(C).id)) is None
    assert kind.healthy(registry("r", C)) is None  # not reported: nothing to compare
    problem = kind.healthy(registry("r", C, versionedKeyIdentifier=KEY.with_version(B).id))
    assert problem is not None and "versionedKeyIdentifier" in problem


def test_bad_wave_tags_are_plan_warnings() -> None:
    good, bad = (
        registry("good", A),
        Consumer(
            "registry", registry("bad", A).resource_id, KEY, "westeurope", {"cmk-rotation-wave": "first"}
        ),
    )
    assert waves.tag_warnings([good]) == []
    [warning] = waves.tag_warnings([bad])
    assert "'first' is not a wave number" in warning and "last wave" in warning
