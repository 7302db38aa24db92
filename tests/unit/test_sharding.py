"""Sharding's values: how a plan's `update` targets split into shard requests, how the parent's
status follows from its shards', and the shard fields of the queue message."""

from __future__ import annotations

import json

import pytest

from rotation.model.consumer import Consumer
from rotation.model.decisions import Decision
from rotation.model.ids import KeyRef, ResourceId, shard_run_id
from rotation.model.request import InvalidRequest, RotationRequest, Shard
from rotation.model.results import PlanStep
from rotation.run.sharding import MAX_SHARD_TARGETS, closing_status, split, wants_shards
from rotation.storage.queue import decode, encode, to_message

A = "00000000-0000-0000-0000-00000000000a"
B = "00000000-0000-0000-0000-00000000000b"
KEY = KeyRef("contoso-cmk.vault.azure.net", "k", "a" * 32)
TYPES = ("Microsoft.ContainerRegistry/registries",)
PARENT = "6f2c1d1e-1111-4a4a-8b8b-000000000001"


def step(sub: str, name: str, action: str = "update") -> PlanStep:
    rid = ResourceId(sub, "rg", "Microsoft.ContainerRegistry", "registries", name)
    consumer = Consumer("registry", rid, KEY, "westeurope")
    return PlanStep.of(consumer, Decision(action, "behind-desired", "behind"), "b" * 32)


def test_update_targets_split_by_subscription_in_chunks() -> None:
    steps = [step(B, f"b{i}") for i in range(3)] + [step(A, f"a{i}") for i in range(5)]
    steps.append(step(A, "current", "already-current"))
    shards = split(steps, size=2)
    assert [(s.subscription, [t.rsplit("/", 1)[1] for t in s.targets]) for s in shards] == [
        (A, ["a0", "a1"]),
        (A, ["a2", "a3"]),
        (A, ["a4"]),
        (B, ["b0", "b1"]),
        (B, ["b2"]),
    ]
    assert wants_shards(steps, 7) and not wants_shards(steps, 8)  # only updates count


def test_a_shard_of_the_longest_ids_still_fits_one_queue_message() -> None:
    name = "r" * 50
    long_rg = "g" * 90
    steps = [
        PlanStep.of(
            Consumer(
                "registry",
                ResourceId(A, long_rg, "Microsoft.ContainerRegistry", "registries", f"{name}{i}"),
                KEY,
                "x",
            ),
            Decision("update", "behind-desired", "behind"),
            "b" * 32,
        )
        for i in range(MAX_SHARD_TARGETS * 2)
    ]
    for shard in split(steps):
        request = RotationRequest(
            KEY.versionless_id, "http", "me", targets=shard.targets, shard=Shard(PARENT, 1, 9, 3)
        )
        encode(request)  # raises past 64 KiB


@pytest.mark.parametrize(
    ("statuses", "closed"),
    [
        (["succeeded", "succeeded"], "succeeded"),
        (["needs-attention", "succeeded"], "needs-attention"),
        (["succeeded", "blocked"], "needs-attention"),
        (["succeeded", "fenced"], "interrupted"),
        (["fenced", "failed"], "failed"),
    ],
)
def test_the_parent_closes_as_its_worst_shard(statuses: list[str], closed: str) -> None:
    assert closing_status(statuses) == closed


def message(**changes: object) -> str:
    body = to_message(
        RotationRequest(
            KEY.versionless_id,
            "http",
            "me",
            targets=(
                f"/subscriptions/{A}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r1",
            ),
            shard=Shard(PARENT, 2, 3, 7),
        )
    )
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v != "DROP"})


def test_a_shard_message_round_trips() -> None:
    request = decode(message(), TYPES)
    assert request.shard == Shard(PARENT, 2, 3, 7)
    assert json.loads(encode(request))["fence"] == 7


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"fence": "DROP"}, "missing"),
        ({"parentRunId": "not-a-uuid"}, "parentRunId"),
        ({"shard": 4}, "exceed"),
        ({"fence": 0}, "positive"),
        ({"shard": True}, "positive"),
        ({"targets": None}, "targets"),
        ({"dryRun": True}, "dry run"),
    ],
)
def test_bad_shard_fields_are_refused(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        decode(message(**changes), TYPES)


def test_shard_run_ids_follow_from_parent_fence_and_place() -> None:
    assert shard_run_id(PARENT, 1, 1) == shard_run_id(PARENT, 1, 1)
    assert len({shard_run_id(PARENT, f, i) for f in (1, 2) for i in (1, 2)}) == 4
