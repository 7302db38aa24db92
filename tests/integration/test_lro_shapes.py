"""Every written kind's write-and-verify over every answer shape its spec allows for a
long-running write (the emulator's `lroShapes` setting): 201 or 202 with Azure-AsyncOperation,
202 with both headers, 202 with Location only, 200 with the resource to poll. The product must
follow each to its end, verify the key it wrote, and never take a not-yet-settled answer for done."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.model.ids import parse_key_id
from rotation.model.request import new_request
from tests import scenarios as s

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("cmk")
UAI = s.identity_id("uai-shared")
EVERY_SHAPE = ("async201", "async202", "both202", "location202", "body200")


def _keyed(entry: str, name: str) -> tuple[str, dict[str, Any]]:
    return entry, s.keyed(entry, name, s.key_id("cmk", OLD), identities=[UAI])


# kind -> (namespace, the scenario part holding one pinned consumer, the shapes its spec allows)
KINDS: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "registry": (
        "Microsoft.ContainerRegistry",
        lambda base: {**base, "registries": [s.registry("reg1", s.key_id("cmk", OLD))]},
        EVERY_SHAPE,
    ),
    "diskencryptionset": (
        "Microsoft.Compute",
        lambda base: {**base, "diskEncryptionSets": [s.encryption_set("des1", s.key_id("cmk", OLD))]},
        EVERY_SHAPE,
    ),
    "loganalytics": (
        "Microsoft.OperationalInsights",
        lambda base: s.with_keyed(base, _keyed("logAnalyticsClusters", "la1")),
        EVERY_SHAPE,
    ),
    "kusto": (
        "Microsoft.Kusto",
        lambda base: s.with_keyed(base, _keyed("kustoClusters", "adx1")),
        EVERY_SHAPE,
    ),
    # not marked long-running in the spec: 200 with the namespace, `Updating` until it settles
    "eventhub": (
        "Microsoft.EventHub",
        lambda base: s.with_keyed(base, _keyed("eventHubNamespaces", "eh1")),
        ("body200",),
    ),
    "servicebus": (
        "Microsoft.ServiceBus",
        lambda base: s.with_keyed(base, _keyed("serviceBusNamespaces", "sb1")),
        ("body200",),
    ),
    # a PUT of the workspace as read (If-Match); the service answers 201 + Azure-AsyncOperation
    "databricks": (
        "Microsoft.Databricks",
        lambda base: {
            **base,
            "databricksWorkspaces": [s.workspace("dbx1", managed_services=s.key_id("cmk", OLD))],
        },
        EVERY_SHAPE,
    ),
    # the spec's PATCH answers 200 or 201 with the store `Updating`
    "appconfiguration": (
        "Microsoft.AppConfiguration",
        lambda base: s.with_keyed(base, _keyed("appConfigurationStores", "appcs1")),
        ("async201", "body200"),
    ),
    # the rotatediskencryptionkey action (a POST): 202 with Location, the spec's example
    "hdinsight": (
        "Microsoft.HDInsight",
        lambda base: s.with_keyed(base, _keyed("hdInsightClusters", "hdi1")),
        ("location202",),
    ),
}
CASES = [(kind, shape) for kind, (_, _, shapes) in KINDS.items() for shape in shapes]


# kinds whose spec keeps provisioningState on the resource: they read it, not the status link
POLLS_RESOURCE = {"registry", "diskencryptionset", "kusto", "loganalytics"}
# App Configuration's status type is `locations/operationsStatus` (the one it registers)
ASYNC_LINKS = ("/operations/", "/operationstatuses/", "/operationsstatus/")
STATUS_LINKS = (*ASYNC_LINKS, "/operationresults/")


def _polls(calls: list[dict[str, Any]], shape: str, kind: str) -> list[dict[str, Any]]:
    """The calls that followed the write the way `shape` (or the kind) tells a client to."""
    if kind in POLLS_RESOURCE:
        assert not [c for c in calls if any(link in c["path"].lower() for link in STATUS_LINKS)]
        return [c for c in calls if c["method"] == "GET"]
    if shape == "location202":
        return [c for c in calls if "/operationresults/" in c["path"].lower()]
    if shape == "body200":
        return [c for c in calls if c["method"] == "GET" and "/operation" not in c["path"].lower()]
    return [c for c in calls if any(link in c["path"].lower() for link in ASYNC_LINKS)]


@pytest.mark.parametrize(("kind", "shape"), CASES, ids=[f"{k}-{sh}" for k, sh in CASES])
def test_a_write_in_every_shape_its_spec_allows_is_followed_and_verified(
    stack, kind: str, shape: str
) -> None:
    namespace, estate, _ = KINDS[kind]
    base = s.scenario({"cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))})
    stack.load(estate(base))
    stack.admin.configure(lroShapes={namespace: shape}, lroSeconds=0.3)
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    [step] = result.steps
    assert (step.action, step.outcome) == ("update", "verified"), step
    assert step.to_version == NEW
    calls = stack.admin.calls()["calls"]
    [write] = [c for c in calls if c["method"] in ("PATCH", "PUT", "POST")]
    assert write["status"] == {"async201": 201, "body200": 200}.get(shape, 202)
    assert _polls(calls[calls.index(write) + 1 :], shape, kind), f"{shape}: the write was not followed"
