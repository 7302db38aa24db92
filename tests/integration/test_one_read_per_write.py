"""One read per long-running write (issue 27 item 4): a kind whose spec keeps provisioningState
on the resource (registries, Data Explorer and Log Analytics clusters, Disk Encryption Sets) is read after
the write's Retry-After, instead of the operation's status link and then the resource. Counted
from the emulator's call log through a real run."""

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
STATUS_LINKS = ("/operations/", "/operationstatuses/", "/operationresults/")


def _estate() -> dict[str, Any]:
    base = s.scenario(
        {"cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
        registries=[s.registry(f"reg{i}", s.key_id("cmk", OLD)) for i in range(3)],
        encryption_sets=[s.encryption_set("des1", s.key_id("cmk", OLD))],
    )
    return s.with_keyed(
        base,
        ("kustoClusters", s.keyed("kustoClusters", "adx1", s.key_id("cmk", OLD), identities=[UAI])),
        (
            "logAnalyticsClusters",
            s.keyed("logAnalyticsClusters", "la1", s.key_id("cmk", OLD), identities=[UAI]),
        ),
    )


def _path(call: dict[str, Any]) -> str:
    return str(call["path"]).split("?")[0].lower()


def _reads_after_write(calls: list[dict[str, Any]], target: str) -> tuple[int, int]:
    """(GETs of the target itself, status-link reads) after its PATCH."""
    arm = [c for c in calls if c["host"] == "management.azure.com"]
    [write] = [i for i, c in enumerate(arm) if c["method"] == "PATCH" and _path(c) == target.lower()]
    after = arm[write + 1 :]
    own = sum(1 for c in after if c["method"] == "GET" and _path(c) == target.lower())
    status = sum(1 for c in after if any(link in _path(c) for link in STATUS_LINKS))
    return own, status


@pytest.mark.parametrize(
    ("lro_seconds", "reads"), [(0.2, 1), (1.6, 2)], ids=["done-by-first-read", "still-updating"]
)
def test_a_long_running_write_costs_reads_of_the_resource_only(stack, lro_seconds: float, reads: int) -> None:
    # Retry-After 1 s (and a 1 s poll interval for Log Analytics' 200, which names none): an
    # operation of 0.2 s is over at the first read; one of 1.6 s shows `Updating` once.
    stack.load(_estate())
    stack.admin.configure(lroSeconds=lro_seconds, retryAfter=1)
    stack.set(ROTATION_POLL_INTERVAL_SECONDS="1")
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    assert {(st.action, st.outcome, st.to_version) for st in result.steps} == {("update", "verified", NEW)}
    assert len(result.steps) == 6
    calls = stack.admin.calls()["calls"]
    targets = [st.target for st in result.steps]
    assert {t: _reads_after_write(calls, t) for t in targets} == dict.fromkeys(targets, (reads, 0))


def test_a_failed_operation_is_read_at_its_status_link_for_the_error(stack) -> None:
    # The registry goes back to its old key: the resource alone cannot say why, the status can.
    stack.load(_estate())
    stack.admin.configure(lroSeconds=0.2, retryAfter=1)
    stack.admin.add_fault(method="PATCH", pathRegex="registries/reg1$", lroResult="Failed")
    result = stack.service().reconciler.run(new_request(parse_key_id(KEY), "cli", "pytest"))
    failed = {st.target.rsplit("/", 1)[-1]: st for st in result.steps if st.outcome != "verified"}
    assert list(failed) == ["reg1"] and failed["reg1"].outcome == "failed"
    assert failed["reg1"].error_code == "OperationFailed"
    calls = stack.admin.calls()["calls"]
    assert _reads_after_write(calls, s.registry_id("reg1")) == (1, 1)
    shown = stack.service().clients.arm().get(s.registry_id("reg1"), "2025-11-01")
    assert shown is not None and shown["properties"]["encryption"]["keyVaultProperties"][
        "keyIdentifier"
    ].endswith(OLD)
