"""Least privilege held to what the product sends: every ARM request a rotation makes is an action
the kinds declare (`arm_actions`, the custom role's list: tests/infra/test_templates.py holds the
role to them), for the kinds whose status links were unconfirmed (HDInsight, Databricks,
PostgreSQL and MySQL flexible servers, App Configuration) and for every other kind. The emulator hands out each
provider's status link where Azure does: HDInsight's `Location` at the cluster
(`clusters/{c}/operationresults/{id}`, the spec's example), Databricks' `Azure-AsyncOperation`
at `resourceGroups/{g}/providers/Microsoft.Databricks/locations/{l}/operationStatuses/{id}` after
a 201 (a recorded answer of the real service); infra/README.md names the sources."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.arm import rbac_action
from rotation.azure.kinds import all_kinds
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY, PINNED = s.key_id("cmk"), s.key_id("cmk", OLD)
UAI = s.identity_id("uai-cmk")
NAMESPACES = (
    "Microsoft.HDInsight",
    "Microsoft.Databricks",
    "Microsoft.DBforPostgreSQL",
    "Microsoft.DBforMySQL",
    "Microsoft.AppConfiguration",
)


def estate() -> dict[str, Any]:
    """One consumer pinned to the old version in each of those providers."""
    # no expiry: MySQL refuses a key version that has one
    versions = (s.version("old", created="-200d", exp=None), s.version("new", created="-1h", exp=None))
    base = s.scenario({"cmk": s.key(*versions)})
    base["databricksWorkspaces"] = [s.workspace("dbx1", managed_services=PINNED)]
    return s.with_keyed(
        base,
        ("hdInsightClusters", s.keyed("hdInsightClusters", "hdi1", PINNED, identities=[UAI])),
        *(
            (entry, s.keyed(entry, name, PINNED, identities=[UAI], key_identity=UAI))
            for entry, name in (("postgresFlexibleServers", "pg1"), ("mysqlFlexibleServers", "my1"))
        ),
        ("appConfigurationStores", s.keyed("appConfigurationStores", "appcs1", PINNED, identities=[UAI])),
    )


def provider_calls(stack: Any) -> list[dict[str, Any]]:
    prefixes = tuple(f"/providers/{ns.lower()}/" for ns in NAMESPACES)
    return [
        c
        for c in stack.admin.calls()["calls"]
        if c["host"] == "management.azure.com" and any(p in c["path"].lower() for p in prefixes)
    ]


@pytest.fixture
def rotated(stack) -> list[dict[str, Any]]:
    stack.load(estate())
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    assert sorted((st.kind, st.outcome) for st in result.steps) == [
        ("appconfiguration", "verified"),
        ("databricks", "verified"),
        ("hdinsight", "verified"),
        ("mysqlflexible", "verified"),
        ("postgresflexible", "verified"),
    ]
    return provider_calls(stack)


def test_every_request_to_these_providers_is_an_action_the_role_grants(rotated) -> None:
    granted = {a.lower() for kind in all_kinds() for a in kind.arm_actions}
    sent = {rbac_action(c["method"], c["path"]) for c in rotated}
    assert sent, "the rotation sent nothing to these providers"
    assert sorted(a for a in sent if a.lower() not in granted) == []


def test_status_links_are_where_each_service_hands_them_out(rotated) -> None:
    polled = [c["path"] for c in rotated if c["method"] == "GET" and "/operation" in c["path"].lower()]
    hdi = s.keyed_id("hdInsightClusters", "hdi1")
    assert any(p.lower().startswith(f"{hdi}/operationresults/".lower()) for p in polled), polled
    dbx_status = f"/subscriptions/{s.SUB_A}/resourceGroups/".lower()
    assert any(
        p.lower().startswith(dbx_status)
        and "/providers/microsoft.databricks/locations/" in p.lower()
        and "/operationstatuses/" in p.lower()
        for p in polled
    ), polled
    [put] = [c for c in rotated if c["method"] == "PUT" and "/microsoft.databricks/" in c["path"].lower()]
    assert put["status"] == 201  # the recorded answer: 201, the workspace `Accepted`


def every_other_kind() -> dict[str, Any]:
    """One consumer pinned to the old version of each kind not in `estate()`."""
    versions = (s.version("old", created="-200d", exp=None), s.version("new", created="-1h", exp=None))
    base = s.scenario(
        {"cmk": s.key(*versions)},
        registries=[s.registry("reg1", PINNED)],
        batch_accounts=[s.batch("batch1", PINNED)],
        groups=[s.group("aci1", "cmk", OLD)],
        storage_accounts=[s.storage("st1", PINNED)],
        encryption_sets=[s.encryption_set("des1", PINNED)],
        sql_servers=[s.sql_server("sql1", PINNED)],
    )
    base["dataFactories"] = [s.factory("adf1", PINNED, key_identity=UAI)]
    keyed = [
        (entry, s.keyed(entry, name, PINNED, identities=[UAI]))
        for entry, name in (
            ("logAnalyticsClusters", "la1"),
            ("kustoClusters", "adx1"),
            ("eventHubNamespaces", "eh1"),
            ("serviceBusNamespaces", "sb1"),
            ("cosmosAccounts", "cosmos1"),
            ("managedClusters", "aks1"),
            ("synapseWorkspaces", "syn1"),
        )
    ]
    return s.with_keyed(base, *keyed)


def test_every_request_a_rotation_of_every_other_kind_makes_is_granted(stack) -> None:
    stack.load(every_other_kind())
    stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    granted = {a.lower() for kind in all_kinds() for a in kind.arm_actions}
    calls = [c for c in stack.admin.calls()["calls"] if c["host"] == "management.azure.com"]
    sent = {rbac_action(c["method"], c["path"]) for c in calls}
    assert sorted(a for a in sent if a.lower() not in granted) == []
