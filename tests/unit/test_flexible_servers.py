"""PostgreSQL and MySQL flexible servers (rotation/azure/kinds/flexible_servers.py) on bodies
shaped like the REST specs' (Microsoft.DBforPostgreSQL 2025-08-01, Microsoft.DBforMySQL
2024-12-30): one Consumer per key, the PATCH moving only the rotated key's URIs, read-back
verification of both URIs, identities, key types, the blocked note, the grace and expiry rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotation.azure.kinds import all_kinds, forbids_key_expiry, retire_grace
from rotation.azure.kinds.flexible_servers import MySqlFlexibleServers, PostgresFlexibleServers
from rotation.estate.inventory import holders_by_version
from rotation.model.decisions import AUTO_ROTATING, BLOCKED, UPDATE, PolicyContext
from rotation.model.ids import parse_key_id
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run.policy import decide

SUB = "ffffffff-ffff-ffff-ffff-ffffffffffff"
UAI = f"/subscriptions/{SUB}/resourceGroups/testrg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/test-usermanagedidentity"
GEO_UAI = f"/subscriptions/{SUB}/resourceGroups/testrg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/test-geo-usermanagedidentity"
V1, V2 = "654f76c4e63845cbb50fd6f751540429", "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"
VAULT, GEO_VAULT = "https://test-vault.vault.azure.net", "https://test-geo-vault.vault.azure.net"
KINDS = (PostgresFlexibleServers(), MySqlFlexibleServers())


def server(
    kind: Any, primary: str, geo: str | None = None, identities: tuple[str, ...] = (UAI, GEO_UAI)
) -> dict[str, Any]:
    provider, rtype = kind.resource_type.split("/")
    encryption: dict[str, Any] = {
        "type": "AzureKeyVault",
        "primaryKeyURI": primary,
        "primaryUserAssignedIdentityId": UAI,
        "primaryEncryptionKeyStatus": "Valid",
    }
    if geo:
        encryption |= {"geoBackupKeyURI": geo, "geoBackupUserAssignedIdentityId": GEO_UAI}
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/testrg/providers/{provider}/{rtype}/exampleserver",
        "name": "exampleserver",
        "type": kind.resource_type,
        "location": "westeurope",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {i: {} for i in identities}},
        "sku": {"name": "Standard_D2ds_v4", "tier": "GeneralPurpose"},
        "properties": {"state": "Ready", "version": "17", "dataEncryption": encryption},
        "tags": {},
    }


def context(key_type: str = "RSA", size: int = 2048, *, v1_enabled: bool = True) -> PolicyContext:
    now = datetime.now(UTC)
    versions = tuple(
        VersionInfo(v, enabled, now - timedelta(days=d), None, None, key_type, ("wrapKey", "unwrapKey"), size)
        for v, d, enabled in ((V1, 200, v1_enabled), (V2, 1, True))
    )
    return PolicyContext(
        KeyState(parse_key_id(f"{VAULT}/keys/cmk"), versions, V2, versions[1], None, "Recoverable"), now
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_both_uris_of_the_key_are_one_consumer_and_one_patch_moves_both(kind: Any) -> None:
    [found] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V1}", f"{VAULT}/keys/cmk/{V1}"))
    assert (
        found.kind == kind.kind and found.version == V1 and found.identity == UAI and found.identity_assigned
    )
    to_key = found.key.with_version(V2)
    body = kind.write_body(found, to_key)
    assert body == {
        "properties": {
            "dataEncryption": {
                "type": "AzureKeyVault",
                "primaryKeyURI": f"{VAULT}/keys/cmk/{V2}",
                "primaryUserAssignedIdentityId": UAI,
                "geoBackupKeyURI": f"{VAULT}/keys/cmk/{V2}",
                "geoBackupUserAssignedIdentityId": GEO_UAI,
            }
        }
    }
    assert decide(found, context(), kind.plan_checks).action == UPDATE


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_a_geo_backup_key_in_another_vault_is_another_consumer_and_left_as_read(kind: Any) -> None:
    geo = f"{GEO_VAULT}/keys/cmk-geo/{V1}"
    primary, backup = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V1}", geo))
    assert primary.key.vault_url == VAULT and backup.key.vault_url == GEO_VAULT and backup.identity == GEO_UAI
    body = kind.write_body(primary, primary.key.with_version(V2))["properties"]["dataEncryption"]
    assert body["primaryKeyURI"].endswith(V2) and body["geoBackupKeyURI"] == geo
    moved_geo = kind.write_body(backup, backup.key.with_version(V2))["properties"]["dataEncryption"]
    assert (
        moved_geo["primaryKeyURI"].endswith(V1)
        and moved_geo["geoBackupKeyURI"] == f"{GEO_VAULT}/keys/cmk-geo/{V2}"
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_verified_only_when_every_uri_of_the_key_reads_back_on_the_new_version(kind: Any) -> None:
    to_key = parse_key_id(f"{VAULT}/keys/cmk/{V2}")
    half = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V2}", f"{VAULT}/keys/cmk/{V1}"))
    [whole] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V2}", f"{VAULT}/keys/cmk/{V2}"))
    assert not kind.verified(half[0], to_key) and kind.verified(whole, to_key)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_both_uris_of_a_key_on_different_versions_are_planned_from_the_backup_and_both_held(
    kind: Any,
) -> None:
    """The geo-backup URI's version plans (so the write moves both); the primary's is still held."""
    lagging, ahead = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V2}", f"{VAULT}/keys/cmk/{V1}"))
    assert (lagging.version, ahead.version) == (V1, V2) and lagging.target == ahead.target
    assert decide(lagging, context(), kind.plan_checks).action == UPDATE
    moved = kind.write_body(lagging, lagging.key.with_version(V2))["properties"]["dataEncryption"]
    assert moved["primaryKeyURI"].endswith(V2) and moved["geoBackupKeyURI"].endswith(V2)
    assert set(holders_by_version([lagging, ahead], context().state)) == {V1, V2}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_versionless_system_managed_and_unassigned_identities(kind: Any) -> None:
    [loose] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk"))
    assert loose.follows_new_versions and decide(loose, context(), kind.plan_checks).action == AUTO_ROTATING
    managed = server(kind, f"{VAULT}/keys/cmk/{V1}")
    managed["properties"]["dataEncryption"] = {"type": "SystemManaged"}
    assert kind.to_consumers(managed) == []
    [orphan] = kind.to_consumers(
        server(kind, f"{VAULT}/keys/cmk/{V1}", f"{VAULT}/keys/cmk/{V1}", identities=(UAI,))
    )
    decision = decide(orphan, context(), kind.plan_checks)
    assert not orphan.identity_assigned and (decision.action, decision.reason) == (
        BLOCKED,
        "identity-not-assigned",
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
@pytest.mark.parametrize(
    ("key_type", "size", "accepted"),
    [("RSA", 3072, True), ("RSA-HSM", 4096, True), ("RSA", 1024, False), ("EC", 256, False)],
)
def test_key_types_and_sizes_the_services_take(kind: Any, key_type: str, size: int, accepted: bool) -> None:
    [found] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V1}"))
    decision = decide(found, context(key_type, size), kind.plan_checks)
    assert (decision.action == UPDATE) is accepted
    assert accepted or decision.reason == "key-type-unsupported"


def test_a_managed_hsm_key_is_read_and_written_as_a_key_id() -> None:
    kind = PostgresFlexibleServers()
    hsm = f"https://contoso-hsm.managedhsm.azure.net/keys/cmk/{V1}"
    [found] = kind.to_consumers(server(kind, hsm))
    assert found.key.in_managed_hsm
    assert kind.write_body(found, found.key.with_version(V2))["properties"]["dataEncryption"][
        "primaryKeyURI"
    ] == (f"https://contoso-hsm.managedhsm.azure.net/keys/cmk/{V2}")


def test_a_blocked_postgres_server_is_told_it_goes_inaccessible_and_mysql_is_not() -> None:
    for kind, says in ((PostgresFlexibleServers(), True), (MySqlFlexibleServers(), False)):
        [found] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V1}"))
        decision = decide(found, context(v1_enabled=False), kind.plan_checks)
        assert (decision.action, decision.reason) == (BLOCKED, "current-version-disabled")
        assert ("Inaccessible within 60 minutes" in decision.message) is says
        assert "Inaccessible" not in decide(found, context(), kind.plan_checks).message


def test_postgres_reports_an_invalid_key_status_to_the_canary_gate() -> None:
    kind = PostgresFlexibleServers()
    body = server(kind, f"{VAULT}/keys/cmk/{V1}")
    [healthy] = kind.to_consumers(body)
    body["properties"]["dataEncryption"]["primaryEncryptionKeyStatus"] = "Invalid"
    [invalid] = kind.to_consumers(body)
    assert kind.healthy(healthy) is None and "Invalid" in (kind.healthy(invalid) or "")


def test_grace_and_expiry_rules_per_kind() -> None:
    postgres, mysql = KINDS
    [pg] = postgres.to_consumers(server(postgres, f"{VAULT}/keys/cmk/{V1}"))
    [my] = mysql.to_consumers(server(mysql, f"{VAULT}/keys/cmk/{V1}"))
    assert retire_grace(postgres, pg) == timedelta(hours=2) and retire_grace(mysql, my) == timedelta(0)
    assert forbids_key_expiry(mysql) and not forbids_key_expiry(postgres)
    others = [k for k in all_kinds() if k.kind not in {postgres.kind, mysql.kind}]
    assert all(
        retire_grace(k, replace(pg, kind=k.kind)) == timedelta(0) for k in others if k.kind != "databricks"
    )
    assert not any(forbids_key_expiry(k) for k in others)


def test_every_mysql_step_says_why_its_key_gets_no_expiry() -> None:
    for kind, says in ((MySqlFlexibleServers(), True), (PostgresFlexibleServers(), False)):
        [pinned] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk/{V1}"))
        [loose] = kind.to_consumers(server(kind, f"{VAULT}/keys/cmk"))
        for found, action in ((pinned, UPDATE), (loose, AUTO_ROTATING)):
            decision = decide(found, context(), kind.plan_checks)
            assert decision.action == action
            assert ("MySQL refuses a key with an expiration date" in decision.message) is says


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_an_unassigned_identity_the_patch_would_send_back_blocks_the_other_keys_consumer_too(
    kind: Any,
) -> None:
    body = server(kind, f"{VAULT}/keys/cmk/{V1}", f"{GEO_VAULT}/keys/cmk-geo/{V1}", identities=(UAI,))
    primary, backup = kind.to_consumers(body)
    assert (primary.identity, primary.identity_assigned) == (GEO_UAI, False)
    assert (backup.identity, backup.identity_assigned) == (GEO_UAI, False)
    decision = decide(primary, context(), kind.plan_checks)
    assert decision.reason == "identity-not-assigned" and GEO_UAI in decision.message
