"""The planner is pure (values in, plan out), and the protocol's optional members have the
defaults a kind that says nothing gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.batch import BatchManagementClient
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from rotation.azure.discovery import DiscoveryError, Inventory
from rotation.azure.kinds import (
    KEY_ID,
    KEY_PARTS,
    all_kinds,
    checks_of,
    forbids_key_expiry,
    hints_of,
    pending,
    recreates_missing,
    retire_grace,
    verified,
)
from rotation.azure.kinds.containergroup import ContainerGroups
from rotation.model.consumer import Consumer
from rotation.model.decisions import BLOCKED_REASONS, Decision, PolicyContext
from rotation.model.errors import ErrorInfo
from rotation.model.ids import KeyRef, ResourceId
from rotation.model.keystate import KeyState, VersionInfo
from rotation.run.gather import Gathered
from rotation.run.planner import make_plan

NOW = datetime(2026, 11, 23, tzinfo=UTC)
KEY = KeyRef("contoso-cmk.vault.azure.net", "k")
OLD = VersionInfo("a" * 32, True, NOW - timedelta(days=100), None, None, "RSA", ("wrapKey", "unwrapKey"))
NEW = VersionInfo("b" * 32, True, NOW - timedelta(days=1), None, None, "RSA", ("wrapKey", "unwrapKey"))
STATE = KeyState(KEY, (OLD, NEW), NEW.version, NEW, None, "Recoverable+Purgeable")
SUB = "00000000-0000-0000-0000-00000000000a"


def consumer(name: str, kind: str = "registry", version: str = OLD.version, **extra: Any) -> Consumer:
    provider = {
        "registry": ("Microsoft.ContainerRegistry", "registries"),
        "containergroup": ("Microsoft.ContainerInstance", "containerGroups"),
    }[kind]
    return Consumer(
        kind, ResourceId(SUB, "rg", *provider, name), KEY.with_version(version), "westeurope", **extra
    )


def plan(gathered: Gathered, policy: str = "report"):
    kinds = [ContainerGroups(policy) if k.kind == "containergroup" else k for k in all_kinds()]
    checks = {k.kind: checks_of(k) for k in kinds}
    return make_plan(KEY, gathered, PolicyContext(gathered.state, NOW), checks)


def test_one_step_per_resource_whatever_the_case_of_its_id() -> None:
    upper = Consumer(
        "registry",
        ResourceId(SUB, "RG", "Microsoft.ContainerRegistry", "registries", "R1"),
        KEY.with_version(OLD.version),
        "westeurope",
    )
    result = plan(Gathered(STATE, Inventory((consumer("r1"), upper))))
    assert [(s.target.rsplit("/", 1)[1], s.action, s.to_version) for s in result.steps] == [
        ("r1", "update", NEW.version)
    ]


def test_pending_consumers_are_planned_first_and_reads_that_failed_are_kept() -> None:
    gone = consumer("g1", "containergroup", recreate_from_saved=True)
    error = DiscoveryError(SUB, "registry", ErrorInfo(True, True, 503, "ServiceUnavailable", "down"))
    gathered = Gathered(
        STATE,
        Inventory((consumer("r1"),), (error,), ("/not/mine",)),
        pending=(gone,),
        errors=({"scope": "rotation-redeploy", "kind": "containergroup", "unreachable": True},),
        warnings=("spec store read-only",),
    )
    result = plan(gathered)
    assert [(s.kind, s.reason) for s in result.steps] == [
        ("registry", "behind-desired"),
        ("containergroup", "finish-interrupted-redeploy"),
    ]
    assert [e["scope"] for e in result.discovery_errors] == [SUB, "rotation-redeploy"]
    assert result.not_consumers == ("/not/mine",)
    assert result.warnings == ("spec store read-only",)


def test_an_unrecoverable_vault_is_warned_about() -> None:
    fragile = KeyState(KEY, (OLD, NEW), NEW.version, NEW, None, "Purgeable")
    assert any("soft delete" in w for w in plan(Gathered(fragile, Inventory(()))).warnings)


def test_the_kinds_own_checks_decide_after_the_chain() -> None:
    group = consumer("g1", "containergroup")
    assert plan(Gathered(STATE, Inventory((group,)))).steps[0].action == "redeploy-required"
    assert plan(Gathered(STATE, Inventory((group,))), "redeploy").steps[0].action == "update"


class Bare:
    """A kind written against the first protocol: none of the optional members."""

    kind = "bare"
    resource_type = "Microsoft.Example/things"
    plan_checks = ()


def test_a_kind_that_says_nothing_gets_the_defaults() -> None:
    bare, shown = Bare(), consumer("r1", version=NEW.version)
    assert verified(bare, shown, KEY.with_version(NEW.version))
    assert not verified(bare, shown, KEY.with_version(OLD.version))
    assert hints_of(bare) == () and checks_of(bare) == () and not recreates_missing(bare)
    assert pending(bare, None, KEY) == []  # type: ignore[arg-type]  # the default reads no clients
    assert retire_grace(bare, shown) == timedelta(0) and not forbids_key_expiry(bare)


def test_the_built_in_kinds_declare_themselves() -> None:
    kinds = {k.kind: k for k in all_kinds()}
    assert {k: getattr(v, "key_naming", None) for k, v in kinds.items()} == {
        "registry": KEY_ID,
        "batch": KEY_ID,
        "containergroup": KEY_PARTS,
        "storage": KEY_PARTS,
        "diskencryptionset": KEY_ID,
        "sqlserver": KEY_ID,
        "loganalytics": KEY_PARTS,
        "kusto": KEY_PARTS,
        "eventhub": KEY_PARTS,
        "servicebus": KEY_PARTS,
        "cosmos": KEY_ID,
        "aks": KEY_ID,
        "datafactory": KEY_PARTS,
        "databricks": KEY_PARTS,
        "appconfiguration": KEY_ID,
        "hdinsight": KEY_PARTS,
        "synapse": KEY_ID,
        "postgresflexible": KEY_ID,
        "mysqlflexible": KEY_ID,
    }
    assert all(getattr(k, "api_version", None) for k in kinds.values())
    assert recreates_missing(kinds["containergroup"]) and isinstance(kinds["containergroup"], ContainerGroups)
    assert hints_of(kinds["registry"]) and hints_of(kinds["batch"]) and hints_of(kinds["containergroup"])


@pytest.mark.parametrize(
    ("kind", "client"),
    [
        ("registry", ContainerRegistryManagementClient),
        ("batch", BatchManagementClient),
        ("containergroup", ContainerInstanceManagementClient),
    ],
)
def test_a_kinds_api_version_is_what_its_client_sends(kind: str, client: type) -> None:
    declared = next(k for k in all_kinds() if k.kind == kind)
    built = client(credential=object(), subscription_id=SUB)
    assert declared.api_version == built._config.api_version  # type: ignore[attr-defined]  # the SDK's private config


def test_one_consumer_that_cannot_be_planned_is_blocked_unreadable_and_the_others_go_on() -> None:
    # issue 21 item 5: an unexpected error planning ONE consumer (here a kind's own check that
    # trips over that resource's data) must not fail the plan for every other consumer.
    def trips_on_r2(c: Consumer, ctx: PolicyContext) -> Decision | None:
        if c.resource_id.name == "r2":
            raise KeyError("encryption")
        return None

    gathered = Gathered(STATE, Inventory((consumer("r1"), consumer("r2"), consumer("r3"))))
    checks = {k.kind: checks_of(k) for k in all_kinds()} | {"registry": (trips_on_r2,)}
    result = make_plan(KEY, gathered, PolicyContext(STATE, NOW), checks)
    assert [(s.target.rsplit("/", 1)[1], s.action, s.reason) for s in result.steps] == [
        ("r1", "update", "behind-desired"),
        ("r2", "blocked", "unreadable"),
        ("r3", "update", "behind-desired"),
    ]
    blocked = result.steps[1]
    assert "KeyError" in blocked.message and "encryption" in blocked.message
    assert blocked.wave == "last" and result.waves[0]["update"] == [
        result.steps[0].target,
        result.steps[2].target,
    ]
    assert "unreadable" in BLOCKED_REASONS
