"""`rotation rotate --yes` lists each kind once (issue 27 item 5): the run takes the consumers
its preview found moments before, and reads each target through ARM before writing it (as for
Resource Graph's lagging rows). Counted from the emulator's call log, table and JSON output."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

from rotation.doors.cli import commands_run
from tests import scenarios as s
from tests.support.commands import invoke

pytestmark = pytest.mark.integration
OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")
LIST = re.compile(r"^/subscriptions/[^/]+/providers/[^/]+/[^/]+$", re.IGNORECASE)  # a kind's list


def _estate(stack: Any) -> list[str]:
    registries = [
        s.registry(f"reg{i}", s.key_id("acr-cmk", OLD), sub=(s.SUB_A, s.SUB_B)[i % 2]) for i in range(4)
    ]
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=registries,
            storage_accounts=[s.storage("st1", s.key_id("acr-cmk", OLD))],
        )
    )
    return [r["id"] for r in registries] + [s.storage_id("st1")]


def _arm(stack: Any) -> list[tuple[str, str]]:
    calls = stack.admin.calls()["calls"]
    return [(c["method"], c["path"].split("?")[0]) for c in calls if c["host"] == "management.azure.com"]


def _lists(calls: list[tuple[str, str]]) -> Counter[str]:
    return Counter(path.lower() for method, path in calls if method == "GET" and LIST.match(path))


@pytest.mark.parametrize("output", ["table", "json"])
def test_rotate_yes_lists_each_kind_once_and_reads_each_target_before_its_write(stack, output: str) -> None:
    targets = _estate(stack)
    code, printed = invoke(*(["-o", "json"] if output == "json" else []), "rotate", KEY, "--yes")
    assert code == 0, printed
    if output == "json":
        result = json.loads(printed)
        assert {st["outcome"] for st in result["steps"]} == {"verified"} and len(result["steps"]) == 5
    else:
        assert printed.count("verified") >= 5
    calls = _arm(stack)
    lists = _lists(calls)
    assert lists and set(lists.values()) == {1}, lists  # every kind, every subscription: once
    for target in targets:
        read = calls.index(("GET", target))
        assert calls[read + 1 :].count(("PATCH", target)) == 1  # read through ARM, then written


def test_a_preview_older_than_the_limit_is_listed_again(stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # The confirmation prompt (or a lease wait) took longer than the limit: the run lists again.
    monkeypatch.setattr(commands_run, "PREVIEW_FRESH_SECONDS", -1.0)
    _estate(stack)
    code, printed = invoke("-o", "json", "rotate", KEY, "--yes")
    assert code == 0, printed
    assert set(_lists(_arm(stack)).values()) == {2}


def test_a_preview_that_could_not_list_a_subscription_is_listed_again(stack) -> None:
    # The preview's registry list of one subscription is refused once: the run does not trust
    # that preview, lists again, and finds (and moves) the registries the preview missed.
    targets = _estate(stack)
    stack.admin.add_fault(
        method="GET",
        pathRegex=f"{s.SUB_B}/providers/Microsoft.ContainerRegistry/registries$",
        status=403,
        count=1,
    )
    code, printed = invoke("-o", "json", "rotate", KEY, "--yes")
    result = json.loads(printed)
    assert {st["target"] for st in result["steps"] if st["outcome"] == "verified"} == set(targets)
    assert code == 0, printed


def test_more_updates_than_the_lists_saved_are_listed_again(stack) -> None:
    # Reading each target before its write would cost more reads than listing again saves
    # (one page per kind in the one subscription): the run lists again.
    stack.set(ROTATION_SUBSCRIPTIONS=s.SUB_A)
    many = len(stack.service().reconciler.kinds) + 1
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=[s.registry(f"reg{i:02d}", s.key_id("acr-cmk", OLD)) for i in range(many)],
        )
    )
    code, printed = invoke("-o", "json", "rotate", KEY, "--yes")
    result = json.loads(printed)
    assert code == 0 and len(result["steps"]) == many, printed
    assert set(_lists(_arm(stack)).values()) == {2}
