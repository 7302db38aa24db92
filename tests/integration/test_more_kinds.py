"""Log Analytics and Data Explorer clusters, Event Hubs and Service Bus namespaces, Cosmos DB
accounts and AKS clusters, end to end: the emulator's routes through the generic ARM client,
a KeyNewVersionCreated event through intake, the queue and the worker, the person-needed AKS
step, blocked reasons, the vault refusing an identity, faults, and a replay after one."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from click.testing import CliRunner

import function_app
from devstack.functions_host import deliver_event_grid
from rotation.doors.cli import main
from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from rotation.model.results import RunResult
from rotation.run.reconcile import Reconciler
from rotation.storage import audit as audit_module
from tests import scenarios as s
from tests.support.runs import by_name

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("cmk")
OTHER = s.key_id("other-cmk", s.vid("other-1"))
UAI = s.identity_id("uai-shared")


def cmk(**kwargs: Any) -> dict[str, Any]:
    return s.key(s.version("old", created="-200d"), s.version("new", created="-1h"), **kwargs)


def kinds_estate(**key_kwargs: Any) -> dict[str, Any]:
    """One pinned consumer of each writable kind, the self-rotating ones, Cosmos DB and AKS."""
    base = s.scenario({"cmk": cmk(**key_kwargs), "other-cmk": s.key(s.version("other-1"))})
    pinned, loose = s.key_id("cmk", OLD), KEY
    return s.with_keyed(
        base,
        ("logAnalyticsClusters", s.keyed("logAnalyticsClusters", "la-pinned", pinned, identities=[UAI])),
        ("logAnalyticsClusters", s.keyed("logAnalyticsClusters", "la-latest", loose, identities=[UAI])),
        ("kustoClusters", s.keyed("kustoClusters", "adxpinned", pinned, identities=[UAI])),
        ("kustoClusters", s.keyed("kustoClusters", "adxlatest", loose, identities=[UAI])),
        ("eventHubNamespaces", s.keyed("eventHubNamespaces", "eh-two-keys", pinned, OTHER, identities=[UAI])),
        ("serviceBusNamespaces", s.keyed("serviceBusNamespaces", "sb-pinned", pinned, identities=[UAI])),
        ("serviceBusNamespaces", s.keyed("serviceBusNamespaces", "sb-latest", loose, identities=[UAI])),
        ("cosmosAccounts", s.keyed("cosmosAccounts", "cosmos-one", loose, identities=[])),
        ("managedClusters", s.keyed("managedClusters", "aks-kms", pinned, identities=[UAI])),
    )


def run(stack, **fields: Any) -> RunResult:
    return stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest", **fields))


def held(stack, entry: str) -> dict[str, Any]:
    """name -> the key id (or key ids) each resource of `entry` holds in the emulator."""
    return {r["id"].rsplit("/", 1)[1]: r.get("keyIds") or r["keyId"] for r in stack.admin.state()[entry]}


def test_routes_list_in_pages_get_and_write_in_the_service_shapes(stack) -> None:
    stack.load(kinds_estate())
    stack.admin.configure(armPageSize=1)
    arm = stack.service().clients.arm()
    clusters = list(arm.list_by_subscription(s.SUB_A, "Microsoft.OperationalInsights/clusters", "2023-09-01"))
    assert sorted(c["name"] for c in clusters) == ["la-latest", "la-pinned"]
    assert (
        clusters[0]["properties"]["keyVaultProperties"]["keyVaultUri"]
        == "https://contoso-cmk.vault.azure.net"
    )

    la = s.keyed_id("logAnalyticsClusters", "la-pinned")
    body = {
        "properties": {
            "keyVaultProperties": {
                "keyVaultUri": "https://contoso-cmk.vault.azure.net",
                "keyName": "cmk",
                "keyVersion": NEW,
            }
        }
    }
    poller = arm.begin_patch(la, "2023-09-01", body)
    patch = [c for c in stack.admin.calls()["calls"] if c["method"] == "PATCH"]
    assert [c["status"] for c in patch] == [200]  # long-running: 200 with the cluster to poll (the spec)
    assert poller.status() not in ("Succeeded", "succeeded")
    after = poller.result()
    assert after["properties"]["keyVaultProperties"]["keyVersion"] == NEW
    assert after["properties"]["provisioningState"] == "Succeeded"

    eh = arm.get(s.keyed_id("eventHubNamespaces", "eh-two-keys"), "2024-01-01")
    entries = eh["properties"]["encryption"]["keyVaultProperties"]
    assert [e["keyName"] for e in entries] == ["cmk", "other-cmk"]
    assert entries[0]["identity"] == {"userAssignedIdentity": UAI}
    aks = arm.get(s.keyed_id("managedClusters", "aks-kms"), "2024-09-01")
    assert aks["properties"]["securityProfile"]["azureKeyVaultKms"]["keyId"].endswith(OLD)
    assert arm.get(s.keyed_id("cosmosAccounts", "nope"), "2024-11-15") is None


def test_one_event_moves_the_pinned_leaves_the_rest_and_reports_aks_with_commands(stack) -> None:
    stack.load(kinds_estate())
    outcomes = deliver_event_grid(
        function_app.on_key_event,
        [s.event_grid_event("KeyNewVersionCreated", "cmk", NEW, event_id="evt-kinds")],
    )
    assert outcomes == [None]
    dispatcher = stack.dispatcher(function_app.run_rotation)
    stats = dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    assert stats.failures == [] and len(stats.invocations) == 1

    assert held(stack, "logAnalyticsClusters") == {"la-pinned": s.key_id("cmk", NEW), "la-latest": KEY}
    assert held(stack, "kustoClusters") == {"adxpinned": s.key_id("cmk", NEW), "adxlatest": KEY}
    assert held(stack, "serviceBusNamespaces") == {"sb-pinned": [s.key_id("cmk", NEW)], "sb-latest": [KEY]}
    # two keys in the list: only the rotated key's entry changed, the other kept as it was
    assert held(stack, "eventHubNamespaces") == {"eh-two-keys": [s.key_id("cmk", NEW), OTHER]}
    assert held(stack, "cosmosAccounts") == {"cosmos-one": KEY}
    assert held(stack, "managedClusters") == {"aks-kms": s.key_id("cmk", OLD)}  # never written
    assert not [w for w in stack.writes("PATCH") if "cosmos" in w["path"] or "managedClusters" in w["path"]]
    assert stack.writes("PUT") == []

    service = stack.service()
    records, _ = service.audit.query(top=500)
    run_ids = {r["runId"] for r in records if r.get("runId")}
    _, findings = audit_module.verify(service.audit, run_ids=sorted(run_ids))
    assert findings == []
    steps = {r["target"].rsplit("/", 1)[1]: r for r in records if r["kind"] == "verified"}
    assert set(steps) == {"la-pinned", "adxpinned", "eh-two-keys", "sb-pinned"}


def test_plan_actions_and_the_aks_commands(stack) -> None:
    stack.load(kinds_estate())
    result = run(stack, dry_run=True)
    steps = by_name(result)
    assert {n: st.action for n, st in steps.items()} == {
        "la-pinned": "update",
        "la-latest": "auto-rotating",
        "adxpinned": "update",
        "adxlatest": "auto-rotating",
        "eh-two-keys": "update",
        "sb-pinned": "update",
        "sb-latest": "auto-rotating",
        "cosmos-one": "auto-rotating",
        "aks-kms": "manual-required",
    }
    aks = steps["aks-kms"]
    assert aks.reason == "kms-whole-cluster-update"
    assert (
        f"az aks update --subscription {s.SUB_A} --resource-group rg-aks --name aks-kms "
        f"--enable-azure-keyvault-kms --azure-keyvault-kms-key-id {s.key_id('cmk', NEW)} "
        "--azure-keyvault-kms-key-vault-network-access Public" in aks.message
    )
    assert "kubectl get secrets --all-namespaces -o json | kubectl replace -f -" in aks.message
    assert f"Keep version {OLD} enabled until the secrets are re-encrypted" in aks.message
    assert result.exit_code == 3  # a person-needed action
    assert stack.writes("PATCH") == []


def test_cli_exits_3_and_each_key_of_a_namespace_has_its_own_plan(stack) -> None:
    stack.load(kinds_estate())
    runner = CliRunner()
    outcome = runner.invoke(main, ["-o", "json", "rotate", KEY, "--yes"], catch_exceptions=False)
    assert outcome.exit_code == 3, outcome.output  # converged; the AKS cluster needs a person
    assert "manual-required" in outcome.output and "az aks update" in outcome.output
    other = runner.invoke(main, ["-o", "json", "plan", s.key_id("other-cmk")], catch_exceptions=False)
    assert other.exit_code == 0, other.output
    [step] = json.loads(other.output)["steps"]
    assert step["target"].endswith("/eh-two-keys") and step["action"] == "already-current"


def test_private_vault_aks_command_names_the_vault_resource(stack) -> None:
    vault_rid = (
        f"/subscriptions/{s.SUB_A}/resourceGroups/rg-security/providers/Microsoft.KeyVault/vaults/contoso-cmk"
    )
    base = s.scenario({"cmk": cmk()})
    spec = s.keyed(
        "managedClusters",
        "aks-private",
        s.key_id("cmk", OLD),
        keyVaultNetworkAccess="Private",
        keyVaultResourceId=vault_rid,
    )
    stack.load(s.with_keyed(base, ("managedClusters", spec)))
    [step] = run(stack, dry_run=True).steps
    assert step.action == "manual-required"
    assert (
        f"--azure-keyvault-kms-key-vault-network-access Private --azure-keyvault-kms-key-vault-resource-id "
        f"{vault_rid}" in step.message
    )


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        # the identity the cluster names for the key is not assigned to it
        (
            lambda: s.with_keyed(
                s.scenario({"cmk": cmk()}),
                (
                    "kustoClusters",
                    s.keyed(
                        "kustoClusters", "adxlost", s.key_id("cmk", OLD), identities=[], key_identity=UAI
                    ),
                ),
                (
                    "logAnalyticsClusters",
                    s.keyed("logAnalyticsClusters", "lanoid", s.key_id("cmk", OLD), identities=[]),
                ),
                (
                    "serviceBusNamespaces",
                    s.keyed(
                        "serviceBusNamespaces",
                        "sblost",
                        s.key_id("cmk", OLD),
                        identities=[],
                        key_identity=UAI,
                    ),
                ),
            ),
            "identity-not-assigned",
        ),
        # only EC versions: nothing a cluster could use
        (
            lambda: s.with_keyed(
                s.scenario({"cmk": s.key(s.version("old"), kty="EC")}),
                ("kustoClusters", s.keyed("kustoClusters", "adxec", s.key_id("cmk", OLD))),
                ("eventHubNamespaces", s.keyed("eventHubNamespaces", "ehec", s.key_id("cmk", OLD))),
            ),
            "key-type-unsupported",
        ),
        # someone disabled the version the cluster is on
        (
            lambda: s.with_keyed(
                s.scenario(
                    {
                        "cmk": s.key(
                            s.version("old", created="-200d", enabled=False), s.version("new", created="-1h")
                        )
                    }
                ),
                ("logAnalyticsClusters", s.keyed("logAnalyticsClusters", "ladisabled", s.key_id("cmk", OLD))),
                ("eventHubNamespaces", s.keyed("eventHubNamespaces", "ehdisabled", s.key_id("cmk", OLD))),
            ),
            "current-version-disabled",
        ),
    ],
    ids=["identity-not-assigned", "key-type-unsupported", "current-version-disabled"],
)
def test_blocked_reasons_write_nothing(stack, scenario: Any, expected: str) -> None:
    stack.load(scenario())
    result = run(stack)
    assert {st.action for st in result.steps} == {"blocked"}
    assert {st.reason for st in result.steps} == {expected}
    assert stack.writes("PATCH") == [] and result.exit_code == 3


def test_vault_refusing_the_identity_fails_the_step_with_a_hint_and_leaves_the_old_version(stack) -> None:
    estate = kinds_estate()
    estate["vaults"]["contoso-cmk"]["deniedIdentities"] = [UAI]
    stack.load(estate)
    result = run(stack)
    steps = by_name(result)
    for name in ("la-pinned", "adxpinned", "eh-two-keys", "sb-pinned"):
        assert steps[name].outcome == "failed", name
    assert steps["la-pinned"].error_code == "KeyVaultAccessFailed"
    assert "Key Vault Crypto Service Encryption User" in (steps["la-pinned"].hint or "")
    assert "get, wrapKey and unwrapKey" in (steps["eh-two-keys"].hint or "")
    assert held(stack, "eventHubNamespaces") == {"eh-two-keys": [s.key_id("cmk", OLD), OTHER]}
    assert held(stack, "logAnalyticsClusters")["la-pinned"] == s.key_id("cmk", OLD)
    assert result.exit_code == 4


def test_throttling_and_server_errors_are_retried_to_verified(stack) -> None:
    stack.load(kinds_estate())
    stack.admin.add_fault(
        method="PATCH", pathRegex="clusters/adxpinned$", status=429, retryAfter="0", count=1
    )
    stack.admin.add_fault(method="PATCH", pathRegex="namespaces/eh-two-keys$", status=503, count=2)
    result = run(stack)
    steps = by_name(result)
    assert steps["adxpinned"].outcome == "verified" and steps["adxpinned"].attempts == 2
    assert steps["eh-two-keys"].outcome == "verified" and steps["eh-two-keys"].attempts == 3
    assert held(stack, "eventHubNamespaces") == {"eh-two-keys": [s.key_id("cmk", NEW), OTHER]}


def test_failed_long_running_write_leaves_the_old_version_and_a_replay_converges(stack) -> None:
    stack.load(kinds_estate())
    stack.admin.add_fault(method="PATCH", pathRegex="clusters/la-pinned$", lroResult="Failed")
    stack.admin.add_fault(method="PATCH", pathRegex="clusters/adxpinned$", lroResult="Failed")
    first = by_name(run(stack))
    assert first["la-pinned"].outcome == "failed" and first["adxpinned"].outcome == "failed"
    assert held(stack, "logAnalyticsClusters")["la-pinned"] == s.key_id("cmk", OLD)
    assert held(stack, "kustoClusters")["adxpinned"] == s.key_id("cmk", OLD)
    assert first["sb-pinned"].outcome == "verified"

    # The same failure through the queue: the request goes to poison; once the service is
    # healthy again, a replay converges.
    deliver_event_grid(
        function_app.on_key_event, [s.event_grid_event("KeyNewVersionCreated", "cmk", NEW, event_id="lro-1")]
    )
    dispatcher = stack.dispatcher(function_app.run_rotation, max_dequeue_count=2)
    assert len(dispatcher.run_until_idle(timeout=120).poisoned) == 1
    dispatcher.close()
    stack.admin.clear_faults()
    replayed = CliRunner().invoke(main, ["-o", "json", "replay", "--yes"], catch_exceptions=False)
    assert replayed.exit_code == 3, replayed.output  # converged; the AKS cluster still needs a person
    assert held(stack, "logAnalyticsClusters")["la-pinned"] == s.key_id("cmk", NEW)
    assert held(stack, "kustoClusters")["adxpinned"] == s.key_id("cmk", NEW)


def test_a_run_limited_to_a_namespace_reads_the_entry_of_its_key(stack) -> None:
    """The namespace holds another key first in its list: a targeted run still finds this key's entry."""
    base = s.scenario({"cmk": cmk(), "other-cmk": s.key(s.version("other-1"))})
    spec = s.keyed("eventHubNamespaces", "eh-other-first", OTHER, s.key_id("cmk", OLD), identities=[UAI])
    stack.load(s.with_keyed(base, ("eventHubNamespaces", spec)))
    target = s.keyed_id("eventHubNamespaces", "eh-other-first")
    result = run(stack, targets=[target])
    [step] = result.steps
    assert step.outcome == "verified"
    assert held(stack, "eventHubNamespaces") == {"eh-other-first": [OTHER, s.key_id("cmk", NEW)]}


def test_sweep_queues_the_pinned_kinds_once_and_not_an_aks_cluster_left_to_a_person(stack) -> None:
    stack.load(kinds_estate())
    first = CliRunner().invoke(main, ["-o", "json", "sweep"], catch_exceptions=False)
    finding = {f["keyId"]: f for f in json.loads(first.output)["keys"]}[KEY]
    assert finding["behind"] == 4 and finding["requestId"]  # LA, ADX, EH, SB; not AKS
    dispatcher = stack.dispatcher(function_app.run_rotation)
    dispatcher.run_until_idle(timeout=120)
    dispatcher.close()
    again = CliRunner().invoke(main, ["-o", "json", "sweep"], catch_exceptions=False)
    finding = {f["keyId"]: f for f in json.loads(again.output)["keys"]}[KEY]
    # AKS is still on the old version, but re-queuing every hour would not move it: a person does
    assert finding["behind"] == 0 and finding["requestId"] is None
    assert held(stack, "managedClusters") == {"aks-kms": s.key_id("cmk", OLD)}


def test_a_slow_log_analytics_rewrap_is_re_read_until_it_lands(stack, monkeypatch) -> None:
    """The cluster stays Updating past the kind's poll window: the run re-reads it (Updating is
    retried within the run's budget) and verifies once the operation has ended. The waits
    between re-reads are the run's injected sleep, and the operation ends during the second:
    nothing depends on real time or jitter."""
    from rotation.azure.kinds import log_analytics

    monkeypatch.setattr(log_analytics, "WAIT_SECONDS", 0.05)
    base = s.scenario({"cmk": cmk()})
    stack.load(
        s.with_keyed(
            base, ("logAnalyticsClusters", s.keyed("logAnalyticsClusters", "la-slow", s.key_id("cmk", OLD)))
        )
    )
    stack.admin.configure(lroSeconds=600)  # never ends by itself while the test runs
    waits: list[float] = []
    pollers: list[str] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        pollers.extend(t.name for t in threading.enumerate() if t.name.startswith("LROPoller"))
        if len(waits) == 2:
            assert stack.admin.finish_operations() == 1

    service = stack.service()
    reconciler = Reconciler(
        service.settings, service.clients, audit=service.audit, runs=service.runs, sleep=sleep
    )
    [step] = reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest")).steps
    assert step.outcome == "verified" and step.attempts == 3, step.error
    assert len(waits) == 2
    assert held(stack, "logAnalyticsClusters") == {"la-slow": s.key_id("cmk", NEW)}
    assert len(stack.writes("PATCH")) == 1  # re-read, never written twice
    # The write the kind stopped waiting for was not polled on in the background: no poller's
    # thread went on reading the cluster (against the subscription's read budget) meanwhile.
    assert pollers == []


def test_a_log_analytics_rewrap_longer_than_the_run_budget_is_left_for_a_later_run(stack) -> None:
    """The poll stops at the run's budget: the step ends failed (the budget ended it while the
    cluster was Updating), the cluster is not written twice, and what the service finishes later a later run verifies."""
    stack.set(ROTATION_TIME_BUDGET_SECONDS="5")
    base = s.scenario({"cmk": cmk()})
    stack.load(
        s.with_keyed(
            base, ("logAnalyticsClusters", s.keyed("logAnalyticsClusters", "la-slower", s.key_id("cmk", OLD)))
        )
    )
    stack.admin.configure(lroSeconds=60)
    [step] = run(stack).steps
    # The run's budget also ends the read that would have found it still Updating (issue 21).
    # The write was sent and its outcome is not known: in flight, and the run interrupted (issue 22).
    assert step.outcome == "in-flight" and step.error_code == "TimeBudgetExhausted", step.error
    assert held(stack, "logAnalyticsClusters") == {
        "la-slower": s.key_id("cmk", OLD)
    }  # the LRO is still running
    assert len(stack.writes("PATCH")) == 1
