"""Inventory, rotation-age report and the retire guard against the emulator and Azurite, through
the CLI and the HTTP route as users call them."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

import function_app
from devstack.functions_host import http_request
from rotation.azure.kinds import all_kinds
from rotation.estate.sweep import sweep
from tests import scenarios as s
from tests.support.commands import invoke

SAMPLE = Path(__file__).resolve().parents[2] / "emulator" / "scenarios" / "sample.json"
SAMPLE_SUBS = "00000000-0000-0000-0000-000000000001,00000000-0000-0000-0000-000000000002"
ACR_OLD, ACR_MID, ACR_NEW = (
    "0a1b2c3d4e5f40718293a4b5c6d7e8f9",
    "7c8d9e0f1a2b43c4d5e6f708192a3b4c",
    "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b",
)
BATCH_V1 = "1a2b3c4d5e6f47788990aabbccddeeff"
DB_OLD, DB_NEW = "5a6b7c8d9e0f41a2b3c4d5e6f7081920", "6b7c8d9e0f1a42b3c4d5e6f708192a31"
OUTSIDE_KEY = "https://fabrikam-cmk.vault.azure.net/keys/partner-cmk/" + s.vid("partner")
OLD, NEW = s.vid("old"), s.vid("new")


def sample_estate(stack) -> None:
    """The demo's sample estate plus one registry whose key is in a vault this system may not use."""
    scenario = json.loads(SAMPLE.read_text())
    scenario["vaults"]["fabrikam-cmk"] = {"keys": {"partner-cmk": s.key(s.version("partner"))}}
    partner = s.registry("partnerreg", OUTSIDE_KEY, sub="00000000-0000-0000-0000-000000000001")
    scenario["registries"].append(partner)
    stack.load(scenario)
    stack.set(ROTATION_ALLOWED_VAULTS="contoso-cmk.vault.azure.net", ROTATION_SUBSCRIPTIONS=SAMPLE_SUBS)


def by_name(consumers: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {c["resourceId"].rsplit("/", 1)[1]: (c["version"], c["action"]) for c in consumers}


def test_inventory_of_the_sample_estate(stack) -> None:
    sample_estate(stack)
    code, output = invoke("-o", "json", "inventory")
    assert code == 0
    estate = json.loads(output)
    assert by_name(estate["consumers"]) == {
        "contosobuild": (ACR_OLD, "update"),
        "contosorelease": (ACR_MID, "update"),
        "contosoedge": (ACR_OLD, "update"),
        "contosocache": ("versionless", "auto-rotating"),
        "contosolegacy": (ACR_OLD, "opted-out"),
        "contosodata": (BATCH_V1, "already-current"),
        "contosorender": (ACR_MID, "update"),
        "contosoetl": (BATCH_V1, "already-current"),
        "contosoml": ("versionless", "auto-rotating"),
        "nightly-report": (ACR_MID, "redeploy-required"),
        "invoice-sync": ("3e4f5a6b7c8d49e0a1b2c3d4e5f60718", "redeploy-required"),  # secure values
        "partnerreg": (s.vid("partner"), None),
        # the kinds main added since (Log Analytics, Data Explorer, namespaces, Cosmos DB, AKS)
        "contoso-logs": (ACR_MID, "update"),
        "contoso-logs-eu2": ("versionless", "auto-rotating"),
        "contosoadx": (ACR_MID, "update"),
        "contoso-telemetry": (ACR_MID, "update"),
        "contoso-orders": (ACR_MID, "update"),
        "contoso-billing": ("versionless", "auto-rotating"),
        "contoso-catalog": ("versionless", "auto-rotating"),
        "contoso-aks": (ACR_MID, "manual-required"),
        # Storage, Disk Encryption Sets, SQL servers; the HSM-backed set is outside here (the
        # tests' ROTATION_ALLOWED_VAULTS names no HSM pool)
        "contosodatalake": (ACR_MID, "update"),
        "contosologs": ("versionless", "auto-rotating"),
        "des-app-tier": (ACR_MID, "update"),
        "des-web-tier": ("9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b", "auto-rotating"),
        "des-regulated": ("5b6c7d8e9f0a41b2c3d4e5f6a7b8c9d0", None),
        "sql-orders": (ACR_MID, "update"),
        "sql-billing": (ACR_MID, "auto-rotating"),
        # Data Factory and Databricks (one step for the workspace's three entities on acr-cmk)
        "contoso-adf": (ACR_MID, "update"),
        "contoso-dbx": (ACR_MID, "update"),
        # App Configuration, HDInsight, Synapse, AKS KMS data encryption (issue 25)
        "contoso-appconfig": (ACR_MID, "update"),
        "contoso-spark": (ACR_MID, "update"),
        "contoso-synapse": (ACR_MID, "manual-required"),
        "contoso-aks-kms2": ("versionless", "auto-rotating"),
        # PostgreSQL and MySQL flexible servers on db-cmk (no expiry: MySQL refuses one)
        "contoso-orders-pg": (DB_OLD, "update"),
        "contoso-billing-mysql": (DB_OLD, "update"),
    }
    rows = {c["resourceId"].rsplit("/", 1)[1]: c for c in estate["consumers"]}
    assert rows["partnerreg"]["outside"] is True and rows["partnerreg"]["reason"] == "vault-not-allowed"
    assert rows["contosobuild"]["desiredVersion"] == ACR_NEW and rows["contosobuild"]["outside"] is False
    assert rows["contosocache"]["followsNewVersions"] is True and rows["contosobuild"]["identity"]
    keys = {k["keyId"].rsplit("/", 1)[1]: k for k in estate["keys"]}
    assert {v["version"]: v["consumers"] for v in keys["acr-cmk"]["versions"]} == {
        ACR_OLD: 3,
        ACR_MID: 17,
        ACR_NEW: 8,  # eight versionless or self-rotating consumers hold the current version
    }
    assert keys["batch-cmk"]["rotationPolicy"] == {
        "expiresAfter": "P1Y",
        "rotates": False,
        "notifyBeforeExpiry": "P30D",
    }
    assert keys["acr-cmk"]["expires"] and keys["partner-cmk"]["outside"] is True
    assert {v["version"]: v["consumers"] for v in keys["db-cmk"]["versions"]} == {DB_OLD: 2, DB_NEW: 0}
    calls = stack.admin.calls()["calls"]
    assert not [c for c in calls if c["host"].startswith("fabrikam-cmk")]  # never read, never written
    assert stack.writes("PATCH") == [] and stack.writes("PUT") == [] and stack.writes("DELETE") == []
    lists = [
        c
        for c in calls
        if c["method"] == "GET" and c["path"].count("/") == 5 and c["host"] == "management.azure.com"
    ]
    assert (
        len(lists) == len(all_kinds()) * 2
    )  # one discovery for every key: one list per kind and subscription


def test_inventory_filters_csv_and_table(stack) -> None:
    sample_estate(stack)
    code, output = invoke(
        "inventory", "--key", "https://contoso-cmk.vault.azure.net/keys/acr-cmk", "-o", "csv"
    )
    rows = list(csv.DictReader(io.StringIO(output)))
    assert (
        code == 0
        and len(rows) == 28  # 3 on the old version, 17 on the middle one, 8 on the current
        and {r["keyId"] for r in rows} == {"https://contoso-cmk.vault.azure.net/keys/acr-cmk"}
    )
    assert rows[0].keys() >= {
        "kind",
        "resourceId",
        "version",
        "followsNewVersions",
        "desiredVersion",
        "action",
        "identity",
        "outside",
    }
    code, output = invoke(
        "-o", "json", "inventory", "--kind", "batch", "--vault", "contoso-cmk.vault.azure.net"
    )
    assert code == 0 and sorted(by_name(json.loads(output)["consumers"])) == [
        "contosoetl",
        "contosoml",
        "contosorender",
    ]
    code, output = invoke("-o", "json", "inventory", "--vault", "fabrikam-cmk.vault.azure.net")
    assert code == 0 and [c["outside"] for c in json.loads(output)["consumers"]] == [True]
    code, output = invoke("inventory")  # the table for people
    assert code == 0 and "contosobuild" in output and "(consumers)" in output
    assert invoke("inventory", "--kind", "toaster")[0] == 2
    # The shared -o/--query, after the subcommand too; csv is a format of every command.
    code, output = invoke("inventory", "--kind", "batch", "--query", "consumers[].resourceId", "-o", "tsv")
    assert code == 0 and sorted(line.rsplit("/", 1)[1] for line in output.splitlines()) == [
        "contosoetl",
        "contosoml",
        "contosorender",
    ]
    code, output = invoke(
        "plan", "https://contoso-cmk.vault.azure.net/keys/acr-cmk", "-o", "csv", "--query", "steps"
    )
    planned = {r["target"].rsplit("/", 1)[1]: r["action"] for r in csv.DictReader(io.StringIO(output))}
    assert code == 3 and planned["contosobuild"] == "update" and planned["contosolegacy"] == "opted-out"
    assert invoke("inventory", "--vault", "not a host")[0] == 2


def test_inventory_over_http_with_roles(stack) -> None:
    sample_estate(stack)

    def get(query: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        response = function_app.list_inventory(
            http_request("GET", "/api/inventory", query=query, headers=headers)
        )
        return response.status_code, json.loads(response.get_body())

    status, body = get({"key": "https://contoso-cmk.vault.azure.net/keys/batch-cmk"})
    assert status == 200 and sorted(by_name(body["consumers"])) == ["contosodata", "contosoetl"]
    assert get({"vault": "a b"})[0] == 400 and get({"top": "1"})[0] == 400
    status, body = get({"key": "https://contoso-cmk.vault.azure.net/secrets/x"})
    assert status == 400 and body["error"]["code"] == "InvalidKeyId"
    assert get({"kind": "x" * 5000})[1]["error"]["code"] == "InvalidQuery"
    # Like every route's refusals (rotation/doors/api.py): a code, one sentence, audited.
    rejected = [r for r in audit_of(stack, "input-rejected") if r["detail"]["route"] == "inventory"]
    assert sorted(r["reason"] for r in rejected) == [
        "InvalidFilter",
        "InvalidKeyId",
        "InvalidQuery",
        "UnknownParameter",
    ]
    stack.set(WEBSITE_AUTH_ENABLED="True")

    def principal(*roles: str) -> str:
        claims = [{"typ": "roles", "val": r} for r in roles]
        return base64.b64encode(json.dumps({"claims": claims, "role_typ": "roles"}).encode()).decode()

    status, body = get(
        {}, {"X-MS-CLIENT-PRINCIPAL-NAME": "dev@contoso.com", "X-MS-CLIENT-PRINCIPAL": principal()}
    )
    assert status == 403 and body["error"]["code"] == "MissingRole"
    status, body = get(
        {},
        {
            "X-MS-CLIENT-PRINCIPAL-NAME": "dev@contoso.com",
            "X-MS-CLIENT-PRINCIPAL": principal("Rotation.Plan"),
        },
    )
    # every consumer of the sample estate, the outside ones included
    assert status == 200 and len(body["consumers"]) == 35


def held_estate(stack) -> None:
    stack.load(
        s.scenario(
            {
                "acr-cmk": s.key(
                    s.version("ancient", created="-400d", exp="+20d"),
                    s.version("old", created="-200d"),
                    s.version("new", created="-1h"),
                )
            },
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk", NEW)),
            ],
        )
    )


def audit_of(stack, kind: str) -> list[dict[str, Any]]:
    records, _ = stack.service().audit.query(top=200)
    return [r for r in records if r["kind"] == kind]


def key_enabled(stack, version: str) -> bool:
    versions = stack.admin.state()["vaults"]["contoso-cmk"]["keys"]["acr-cmk"]["versions"]
    return next(v["enabled"] for v in versions if v["version"] == version)


def test_disable_is_refused_while_a_consumer_holds_the_version_then_allowed(stack) -> None:
    held_estate(stack)
    code, output = invoke("-o", "json", "versions", "show", s.key_id("acr-cmk"))
    shown = {v["version"]: v for v in json.loads(output)["versions"]}
    assert code == 0 and [h.rsplit("/", 1)[1] for h in shown[OLD]["holders"]] == ["reg1"]
    assert shown[s.vid("ancient")]["consumers"] == 0
    code, output = invoke("versions", "disable", s.key_id("acr-cmk", OLD))
    assert code == 2 and "--yes" in output  # no terminal, no --yes: nothing happens
    code, output = invoke("versions", "disable", s.key_id("acr-cmk", OLD), "--yes")
    assert code == 3 and "refused" in output and "reg1" in output
    assert key_enabled(stack, OLD)
    [refusal] = audit_of(stack, "version-disable")
    assert refusal["outcome"] == "refused" and refusal["detail"]["consumers"] == [s.registry_id("reg1")]
    assert refusal["actor"].startswith("cli:")

    assert invoke("rotate", s.key_id("acr-cmk"), "--yes")[0] == 0  # reg1 moves to the new version
    code, output = invoke("-o", "json", "versions", "disable", s.key_id("acr-cmk", OLD), "--yes")
    assert code == 0 and json.loads(output)["outcome"] == "disabled"
    assert not key_enabled(stack, OLD)
    assert [r["outcome"] for r in audit_of(stack, "version-disable")] == ["disabled", "refused"]
    code, output = invoke("-o", "json", "versions", "disable", s.key_id("acr-cmk", OLD), "--yes")
    assert code == 0 and json.loads(output)["outcome"] == "already-disabled"


def test_force_disables_a_held_version_as_an_audited_override(stack) -> None:
    held_estate(stack)
    code, output = invoke("-o", "json", "versions", "disable", s.key_id("acr-cmk", NEW), "--yes", "--force")
    outcome = json.loads(output)
    assert (
        code == 0
        and outcome["outcome"] == "disabled-override"
        and outcome["consumers"] == [s.registry_id("reg2")]
    )
    assert not key_enabled(stack, NEW)
    [record] = audit_of(stack, "version-disable")
    assert record["reason"] == "forced" and record["detail"]["consumers"] == [s.registry_id("reg2")]


def test_disable_refuses_when_a_subscription_cannot_be_listed(stack) -> None:
    held_estate(stack)
    stack.admin.add_fault(
        method="GET", pathRegex=f"{s.SUB_B}/providers/Microsoft.Batch/batchAccounts$", status=403
    )
    code, output = invoke("versions", "disable", s.key_id("acr-cmk", s.vid("ancient")), "--yes")
    assert code == 3 and "could not list every consumer" in output.replace("\n", " ")
    assert key_enabled(stack, s.vid("ancient"))
    assert invoke("versions", "disable", s.key_id("acr-cmk"), "--yes")[0] == 2  # a version is required
    assert (
        invoke("versions", "disable", "https://fabrikam-cmk.vault.azure.net/keys/k/" + OLD, "--yes")[0] == 2
    )


def test_report_exits_3_on_the_sample_estate_and_0_after_a_rotation(stack) -> None:
    sample_estate(stack)
    code, output = invoke("-o", "json", "report", "--max-age-days", "120")
    report = json.loads(output)
    assert code == 3
    stale = {r["resourceId"].rsplit("/", 1)[1]: r for r in report["stale"]}
    assert stale["contosobuild"]["notMoved"].startswith("behind: the next run moves it to " + ACR_NEW)
    assert stale["contosolegacy"]["notMoved"].startswith("opted out")
    assert stale["invoice-sync"]["notMoved"].startswith("needs a person (redeploy-required)")  # secure values
    assert stale["nightly-report"]["notMoved"].startswith("needs a person (redeploy-required)")
    assert stale["contosoetl"]["stale"][0].startswith("created 337 days ago")  # and it expires in 28 days
    assert "contosocache" not in stale  # versionless: on the current version, minutes old
    assert [r["resourceId"].rsplit("/", 1)[1] for r in report["notEvaluated"]] == [
        "des-regulated",
        "partnerreg",
    ]  # HSM pool and vault not allowed here

    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[
                s.registry("reg1", s.key_id("acr-cmk", OLD)),
                s.registry("reg2", s.key_id("acr-cmk")),
            ],
        )
    )
    stack.set(
        ROTATION_ALLOWED_VAULTS="contoso-cmk.vault.azure.net", ROTATION_SUBSCRIPTIONS=f"{s.SUB_A},{s.SUB_B}"
    )
    code, output = invoke("report", "--max-age-days", "90", "-o", "csv")
    assert code == 3 and [r["resourceId"] for r in csv.DictReader(io.StringIO(output))] == [
        s.registry_id("reg1")
    ]
    assert invoke("rotate", s.key_id("acr-cmk"), "--yes")[0] == 0
    code, output = invoke("report", "--max-age-days", "90")
    assert code == 0 and "no consumer is on a version older than 90 days" in output


def test_sweep_writes_the_daily_report_once_with_retire_candidates(stack) -> None:
    held_estate(stack)
    service = stack.service()
    sweep(service)
    sweep(service)
    blobs = BlobServiceClient.from_connection_string(stack.storage).get_container_client("rotation-reports")
    names = [b.name for b in blobs.list_blobs()]
    assert names == [f"rotation-age/{datetime.now(UTC):%Y-%m-%d}.json"]
    report = json.loads(blobs.download_blob(names[0]).readall())
    assert report["maxAgeDays"] == 365 and report["stale"] == []
    assert [c["keyId"] for c in report["retireCandidates"]] == [s.key_id("acr-cmk", s.vid("ancient"))]
    assert report["expiringConsumers"] == []
    [written] = audit_of(stack, "age-report-written")
    assert written["message"] == f"rotation-reports/{names[0]}"
    assert key_enabled(stack, s.vid("ancient"))  # reported, never disabled automatically
