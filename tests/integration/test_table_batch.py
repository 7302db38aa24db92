"""rotation/storage/tablebatch.py against Azurite: the transaction is the one azure-data-tables
sends (same bytes but boundaries and dates), all or nothing, refusals keep their status."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest
from azure.data.tables import EdmType, TableClient, TableServiceClient, UpdateMode

from rotation.storage.tablebatch import TransactionRefused, submit_transaction, upsert_entities

ENTITIES: list[dict[str, Any]] = [
    {"PartitionKey": "20261201", "RowKey": "8210-run-999999", "Kind": "plan-step", "Seq": 0, "Flag": True},
    {"PartitionKey": "20261201", "RowKey": "o'brien é", "Message": 'a "quoted" é ✓', "DurationMs": 1234},
    {"PartitionKey": "20261201", "RowKey": "big", "Count": 2**31 - 1, "Detail": '{"k": [1, 2]}'},
]


@pytest.fixture
def table(azurite) -> TableClient:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return service.create_table_if_not_exists(f"batch{uuid.uuid4().hex[:12]}")


def _sent(capture: list[Any]) -> tuple[bytes, dict[str, str]]:
    request = capture[-1].http_request
    return request.body, dict(request.headers)


def _normal(body: bytes) -> bytes:
    body = re.sub(rb"(batch|changeset)_[0-9a-f-]{36}", rb"\1_B", body)
    return re.sub(rb"(x-ms-date|Date): [^\r\n]+", rb"\1: D", body)


def test_the_transaction_is_the_one_the_sdk_sends(table: TableClient) -> None:
    theirs: list[Any] = []
    ours: list[Any] = []
    table.submit_transaction([("upsert", e) for e in ENTITIES], raw_request_hook=theirs.append)
    upsert_entities(table, ENTITIES, raw_request_hook=ours.append)
    (their_body, their_headers), (our_body, our_headers) = _sent(theirs), _sent(ours)
    assert _normal(our_body) == _normal(their_body)
    same = (
        "x-ms-version",
        "DataServiceVersion",
        "MaxDataServiceVersion",
        "Accept",
        "Content-Length",
        "User-Agent",
    )
    assert {h: our_headers[h] for h in same} == {h: their_headers[h] for h in same}
    assert our_headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert theirs[-1].http_request.url == ours[-1].http_request.url
    stored = {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq '20261201'")}
    assert stored == {e["RowKey"]: e for e in ENTITIES}


class Colour(StrEnum):
    BLUE = "blue"


TYPED: list[dict[str, Any]] = [  # what the SDK types, or leaves out, beyond str, bool and int32
    {"PartitionKey": "t", "RowKey": "none", "Gone": None, "Low": -(2**31), "High": 2**31 - 1, "Off": False},
    {"PartitionKey": "t", "RowKey": "float", "Ratio": 0.25, "Whole": 2.0, "Name": "é"},
    {"PartitionKey": "t", "RowKey": "date", "At": datetime(2026, 12, 7, 16, 0, 1, 250000, tzinfo=UTC)},
    {"PartitionKey": "t", "RowKey": "int64", "Big": (2**40, EdmType.INT64), "Small": 7},
    {
        "PartitionKey": "t",
        "RowKey": "enum",
        "Colour": Colour.BLUE,
        "Id": uuid.UUID(int=5),
        "Raw": b"\x00\xff",
    },
]


def test_values_the_sdk_types_are_typed_as_it_does(table: TableClient) -> None:
    for entity in TYPED:
        theirs: list[Any] = []
        ours: list[Any] = []
        table.submit_transaction([("upsert", entity)], raw_request_hook=theirs.append)
        upsert_entities(table, [entity], raw_request_hook=ours.append)
        assert _normal(_sent(ours)[0]) == _normal(_sent(theirs)[0]), entity["RowKey"]
    with pytest.raises(TypeError):  # an int past int32 must say its type, as the SDK asks
        upsert_entities(table, [{"PartitionKey": "t", "RowKey": "x", "Count": 2**31}])
    assert "x" not in {e["RowKey"] for e in table.query_entities("PartitionKey eq 't'")}


def test_replacing_and_deleting_are_the_sdks_too(table: TableClient) -> None:
    """What RunStore.finished sends: step rows replaced, rows of a longer earlier attempt deleted."""
    captured: dict[str, list[Any]] = {"theirs": [], "ours": []}
    for who in ("theirs", "ours"):
        table.upsert_entity({"PartitionKey": "run", "RowKey": "step-00002", "Error": "old"})
        table.upsert_entity({"PartitionKey": "run", "RowKey": "step-00001", "Error": "old", "Kept": "no"})
        operations: list[Any] = [
            (
                "upsert",
                {"PartitionKey": "run", "RowKey": "step-00001", "Outcome": "verified"},
                {"mode": UpdateMode.REPLACE},
            ),
            ("delete", {"PartitionKey": "run", "RowKey": "step-00002"}),
        ]
        if who == "theirs":
            table.submit_transaction(operations, raw_request_hook=captured[who].append)
        else:
            submit_transaction(table, operations, raw_request_hook=captured[who].append)
        rows = {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq 'run'")}
        assert rows == {"step-00001": {"PartitionKey": "run", "RowKey": "step-00001", "Outcome": "verified"}}
    assert _normal(_sent(captured["ours"])[0]) == _normal(_sent(captured["theirs"])[0])
    with pytest.raises(ValueError, match="unsupported"):
        submit_transaction(table, [("insert-or-whatever", {"PartitionKey": "run", "RowKey": "x"})])


def test_create_and_a_guarded_update_refuse_a_row_someone_else_wrote(table: TableClient) -> None:
    """What the audit trail's head row relies on (two writers of one run's chain)."""
    head = {"PartitionKey": "day", "RowKey": "~run-r", "Count": 1}
    [etag] = submit_transaction(table, [("create", head)])
    assert etag == table.get_entity("day", "~run-r").metadata["etag"]
    with pytest.raises(TransactionRefused) as exists:
        submit_transaction(table, [("upsert", {"PartitionKey": "day", "RowKey": "1"}), ("create", head)])
    assert exists.value.status_code == 409
    etags = submit_transaction(table, [("update", {**head, "Count": 2}, {"etag": etag})])
    assert etags[-1] == table.get_entity("day", "~run-r").metadata["etag"]
    with pytest.raises(TransactionRefused) as moved:  # the ETag read before the other writer's update
        submit_transaction(
            table, [("upsert", {"PartitionKey": "day", "RowKey": "2"}), ("update", head, {"etag": etag})]
        )
    assert moved.value.status_code == 412
    assert table.get_entity("day", "~run-r")["Count"] == 2  # all or none: nothing of either was applied
    assert [e["RowKey"] for e in table.query_entities("PartitionKey eq 'day'")] == ["~run-r"]


def test_an_upsert_merges_into_the_stored_entity(table: TableClient) -> None:
    upsert_entities(table, [{"PartitionKey": "p", "RowKey": "r", "A": "one"}])
    upsert_entities(table, [{"PartitionKey": "p", "RowKey": "r", "B": 2}])
    assert dict(table.get_entity("p", "r")) == {"PartitionKey": "p", "RowKey": "r", "A": "one", "B": 2}


def test_a_refused_operation_applies_none_and_keeps_its_status(table: TableClient) -> None:
    good = {"PartitionKey": "p", "RowKey": "good", "A": "x"}
    bad = {"PartitionKey": "p", "RowKey": "bad/key", "A": "x"}  # "/" is not allowed in a key
    with pytest.raises(TransactionRefused) as refused:
        upsert_entities(table, [good, bad])
    assert refused.value.status_code == 400
    assert "400" in str(refused.value)
    assert list(table.query_entities("PartitionKey eq 'p'")) == []  # all or nothing


def test_more_than_a_transaction_holds_is_refused_before_sending(table: TableClient) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        upsert_entities(table, [{"PartitionKey": "p", "RowKey": str(i)} for i in range(101)])
    upsert_entities(table, [])  # nothing to write: no call
