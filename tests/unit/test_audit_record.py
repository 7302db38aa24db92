"""The audit record's canonical form and hash, per scheme (storage/audit/record.py), without Azurite."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

import pytest

from rotation.storage.audit.record import (
    FIELDS,
    MAX_DETAIL,
    SCHEME,
    UnknownScheme,
    bounded_detail,
    canonical_hash,
    from_entity,
    to_entity,
)


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(FIELDS)
    base.update(
        time="2026-12-07T08:00:00.000Z",
        kind="plan-step",
        runId="run-1",
        seq=3,
        prevHash="ab" * 32,
        actor="pytest",
        keyId="https://kv.vault.azure.net/keys/k",
        target="/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r",
        detail={"b": 1, "a": [1, 2]},
    )
    base.update(changes)
    return base


def sha(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_record_without_a_scheme_hashes_its_twenty_fields_as_before() -> None:
    old = record()  # written before schemes existed: no `scheme`, and its partition is not hashed
    assert canonical_hash(old) == sha({k: old[k] for k in FIELDS})
    assert canonical_hash({**old, "partition": "20261208"}) == canonical_hash(old)
    assert canonical_hash({**old, "scheme": 1}) == canonical_hash(old)


def test_scheme_2_also_binds_the_scheme_and_the_partition() -> None:
    new = record(scheme=SCHEME, partition="20261207")
    assert SCHEME == 2
    assert canonical_hash(new) == sha({**{k: new[k] for k in FIELDS}, "scheme": 2, "partition": "20261207"})
    assert canonical_hash({**new, "partition": "20261206"}) != canonical_hash(new)  # moved to another day
    assert canonical_hash({**new, "scheme": None}) != canonical_hash(new)  # passed off as scheme 1


@pytest.mark.parametrize("scheme", [3, "2", True, [2], 2.0])
def test_a_scheme_this_version_does_not_know_cannot_be_hashed(scheme: Any) -> None:
    with pytest.raises(UnknownScheme):
        canonical_hash(record(scheme=scheme, partition="20261207"))


def test_every_field_of_scheme_2_changes_the_hash() -> None:
    new = record(scheme=SCHEME, partition="20261207")
    for name in (*FIELDS, "partition"):
        assert canonical_hash({**new, name: "changed"}) != canonical_hash(new), name


def test_a_stored_entity_reads_back_to_the_same_hash() -> None:
    for written in (record(), record(scheme=SCHEME, partition="20261207")):
        written["hash"] = canonical_hash(written)
        entity = to_entity("20261207", written)
        assert entity["KeyNorm"] == written["keyId"].lower()
        assert entity["TargetNorm"] == written["target"].lower()
        read = from_entity(entity)
        assert canonical_hash(read) == written["hash"]
        assert ("Scheme" in entity) == ("scheme" in written and written["scheme"] is not None)


class Shade(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "detail",
    [
        {"writes": 1, "planReason": "key-version-behind", "attempts": 2, "ok": True, "none": None},
        {"é": 'a "quoted" ✓\n\u2028', "\ud800": "lone surrogate", "b": False},
        {"z": 2**70, "a": -1, "m": ""},
        {"ratio": 0.5, "a": 1},  # a float: JSON's to give back
        {"nested": {"b": 1, "a": [1, (2, 3)]}, "a": 1},
        {"shade": Shade.RED, "a": 1},  # a str subclass: JSON writes its value
        {2: "int keys", 1: "become strings"},
        {"long": "x" * (MAX_DETAIL - 12)},  # fits just so
        {"long": "x" * MAX_DETAIL},  # does not: truncated
        {"escapes": "\x01" * (MAX_DETAIL // 6)},  # short in characters, long in JSON
        [3, 1, 2],
        "text",
    ],
)
def test_a_detail_is_what_its_json_round_trip_gives(detail: Any) -> None:
    """A record's detail is bounded before it is hashed: whatever the detail, what is kept is
    what `json.loads(json.dumps(detail, sort_keys=True, default=str))` gives (its keys in that
    order), or the truncation when that JSON is longer than a Table property takes."""
    text = json.dumps(detail, sort_keys=True, default=str)
    expected = json.loads(text) if len(text) <= MAX_DETAIL else {"truncated": True, "preview": text[:4000]}
    kept = bounded_detail(detail)
    assert kept == expected
    assert json.dumps(kept) == json.dumps(expected)  # the same order, the same types
    if isinstance(detail, dict):
        assert kept is not detail  # the caller's dict is never what the record holds
