"""storage/written.py against Azurite: what the product wrote to each consumer, a key's rows over
sixteen partitions, read back in one query, rows from before the split still read and merged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from rotation.model.ids import parse_key_id
from rotation.storage.ledger import row_key
from rotation.storage.written import RevertRow, WrittenStore, bucket, partition
from tests import scenarios as s

KEY = parse_key_id(s.key_id("acr-cmk"))
OTHER = parse_key_id(s.key_id("other-cmk"))
AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def table(azurite) -> TableClient:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return service.create_table_if_not_exists(f"written{uuid.uuid4().hex[:12]}")


def targets(count: int, prefix: str = "reg") -> list[str]:
    return [s.registry_id(f"{prefix}{n:04d}") for n in range(count)]


def test_a_runs_rows_spread_over_the_keys_sixteen_partitions_and_read_back_whole(azurite, table) -> None:
    ids = targets(400)
    WrittenStore(table).record_verified(KEY, [(t, "A" * 32) for t in ids], "run-1", AT)
    stored = list(table.query_entities("KeyId eq @k", parameters={"k": KEY.versionless_id}))
    assert len(stored) == 400
    used = {e["PartitionKey"] for e in stored}
    assert used == {f"{partition(KEY)}-{c}" for c in "0123456789abcdef"}  # 400 rows: every bucket
    assert all(e["PartitionKey"] == bucket(KEY, e["RowKey"]) for e in stored)

    read = WrittenStore(table).read(KEY)
    assert set(read) == {t.lower() for t in ids}
    assert {(w.version, w.run_id, w.written_at) for w in read.values()} == {("a" * 32, "run-1", AT)}

    # one query for the whole key, as before the split (every request the client sends is seen)
    sent: list[Any] = []
    watched = TableClient.from_connection_string(
        azurite.connection_string, table.table_name, raw_request_hook=sent.append
    )
    assert len(WrittenStore(watched).read(KEY)) == 400
    assert [r.http_request.method for r in sent] == ["GET"]


def test_another_keys_rows_are_not_read(table) -> None:
    store = WrittenStore(table)
    store.record_verified(KEY, [(t, "a" * 32) for t in targets(40)], "run-1", AT)
    store.record_verified(OTHER, [(t, "b" * 32) for t in targets(30, "acr")], "run-2", AT)
    assert {w.version for w in store.read(KEY).values()} == {"a" * 32}
    assert len(store.read(KEY)) == 40
    assert {w.version for w in store.read(OTHER).values()} == {"b" * 32}
    assert len(store.read(OTHER)) == 30


def test_rows_written_before_the_split_are_read_and_newer_columns_win(table) -> None:
    """An instance upgraded in place: its rows of the key are in `written-<slug>`. They are read,
    and a row written since into a bucket merges over the old one, as insert-or-merge did: the
    new version wins, the revert recorded before is kept."""
    reverted, untouched = s.registry_id("reg1"), s.registry_id("reg2")
    earlier = AT - timedelta(days=30)
    for target, extra in (
        (reverted, {"RevertedTo": "0" * 32, "RevertedFrom": "1" * 32, "RevertedAt": "2026-11-02T00:00:00Z"}),
        (untouched, {}),
    ):
        table.upsert_entity(
            {
                "PartitionKey": partition(KEY),
                "RowKey": row_key(target.lower()),
                "KeyId": KEY.versionless_id,
                "Target": target,
                "Version": "1" * 32,
                "RunId": "run-old",
                "WrittenAt": earlier.isoformat(),
                **extra,
            }
        )
    WrittenStore(table).record_verified(KEY, [(reverted, "2" * 32)], "run-new", AT)

    read = WrittenStore(table).read(KEY)
    assert (read[reverted.lower()].version, read[reverted.lower()].run_id) == ("2" * 32, "run-new")
    assert read[reverted.lower()].reverted_to == "0" * 32  # kept from the row before the split
    assert (read[untouched.lower()].version, read[untouched.lower()].run_id) == ("1" * 32, "run-old")

    # a revert found now replaces the old one on the merged row
    WrittenStore(table).record_reverts(
        KEY, [RevertRow(reverted, "3" * 32, "2" * 32, AT, "deployer", "corr-1", "write")]
    )
    now = WrittenStore(table).read(KEY)[reverted.lower()]
    assert (now.version, now.reverted_to, now.reverted_by) == ("2" * 32, "3" * 32, "deployer")
