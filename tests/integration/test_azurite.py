"""Azurite round trips with the storage SDKs the product uses: queue messages in the Functions
host's base64 encoding, table entities, blobs."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from tests.conftest import wipe_storage
from tests.support.storage import Wiper

pytestmark = pytest.mark.integration


def test_queue_messages_are_base64_text_as_the_functions_trigger_expects(stack: Any) -> None:
    name = "rotation-requests"
    producer = QueueClient.from_connection_string(
        stack.storage,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    producer.create_queue()
    payload = json.dumps(
        {
            "schema": 1,
            "requestId": "r-1",
            "keyId": "https://contoso-cmk.vault.azure.net/keys/k",
            "actor": "tests ✓",
        }
    )
    sent = producer.send_message(payload)

    raw = QueueClient.from_connection_string(stack.storage, name)  # no decoding: what the host reads
    [stored] = raw.peek_messages(max_messages=5)
    assert stored.id == sent.id
    assert stored.content != payload
    assert base64.b64decode(stored.content, validate=True).decode("utf-8") == payload

    [received] = producer.receive_messages(max_messages=5, visibility_timeout=1)
    assert received.content == payload
    assert received.dequeue_count == 1
    assert producer.get_queue_properties().approximate_message_count == 1
    producer.delete_message(received.id, received.pop_receipt)
    assert raw.peek_messages() == []


def test_queue_message_visibility_and_dequeue_count(stack: Any) -> None:
    queue = QueueClient.from_connection_string(
        stack.storage,
        "rotation-requests-poison",
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    queue.create_queue()
    queue.send_message("retry me")
    first = next(queue.receive_messages(visibility_timeout=30))
    assert list(queue.receive_messages()) == []  # invisible while being processed
    queue.update_message(first.id, first.pop_receipt, visibility_timeout=0)
    second = next(queue.receive_messages(visibility_timeout=30))
    assert (second.id, second.dequeue_count, second.content) == (first.id, 2, "retry me")


def test_table_entities_upsert_and_query(stack: Any) -> None:
    table = TableClient.from_connection_string(stack.storage, "RotationLedger")
    table.create_table()
    table.upsert_entity({"PartitionKey": "key", "RowKey": "lease", "Owner": "run-1", "Waits": 0})
    table.upsert_entity({"PartitionKey": "key", "RowKey": "lease", "Waits": 2}, mode=UpdateMode.MERGE)
    merged = table.get_entity("key", "lease")
    assert (merged["Owner"], merged["Waits"]) == ("run-1", 2)
    table.upsert_entity({"PartitionKey": "key", "RowKey": "lease", "Waits": 3}, mode=UpdateMode.REPLACE)
    assert "Owner" not in table.get_entity("key", "lease")

    for n in range(5):
        table.upsert_entity(
            {"PartitionKey": "runs", "RowKey": f"r{n}", "Outcome": "ok" if n % 2 else "failed"}
        )
    failed = table.query_entities(
        "PartitionKey eq @pk and Outcome eq @o", parameters={"pk": "runs", "o": "failed"}
    )
    assert sorted(e["RowKey"] for e in failed) == ["r0", "r2", "r4"]

    # ETags guard takeovers, as the ledger's leases rely on.
    current = table.get_entity("key", "lease")
    table.update_entity(
        current,
        mode=UpdateMode.MERGE,
        etag=current.metadata["etag"],
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(ResourceModifiedError):
        table.update_entity(
            current, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
        )
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("key", "missing")


def test_blob_upload_download_and_list(stack: Any) -> None:
    blobs = BlobServiceClient.from_connection_string(stack.storage)
    container = blobs.create_container("eventgrid-deadletters")
    paths = [
        "topic/SUBSCRIPTION-A/2026/11/20/09/a.json",
        "topic/SUBSCRIPTION-A/2026/11/20/10/b.json",
        "topic/SUBSCRIPTION-B/2026/11/21/00/c.json",
    ]
    for path in paths:
        container.upload_blob(path, json.dumps([{"id": path}]).encode(), metadata={"source": "tests"})

    assert sorted(b.name for b in container.list_blobs(name_starts_with="topic/SUBSCRIPTION-A/")) == paths[:2]
    downloaded = container.download_blob(paths[2]).readall()
    assert json.loads(downloaded) == [{"id": paths[2]}]
    assert container.get_blob_client(paths[0]).get_blob_properties().metadata == {"source": "tests"}
    container.upload_blob(paths[0], b"[]", overwrite=True)
    assert container.download_blob(paths[0]).readall() == b"[]"
    container.delete_blob(paths[1])
    assert [b.name for b in container.list_blobs()] == [paths[0], paths[2]]
    assert [c.name for c in blobs.list_containers()] == ["eventgrid-deadletters"]


def stored(connection_string: str) -> tuple[list[str], list[str], list[str]]:
    """Every queue, table and container name in the account, as the SDKs list them."""
    return (
        sorted(q.name for q in QueueServiceClient.from_connection_string(connection_string).list_queues()),
        sorted(t.name for t in TableServiceClient.from_connection_string(connection_string).list_tables()),
        sorted(c.name for c in BlobServiceClient.from_connection_string(connection_string).list_containers()),
    )


def fill(connection_string: str, count: int) -> None:
    for i in range(count):
        QueueServiceClient.from_connection_string(connection_string).create_queue(f"queue{i}")
        TableServiceClient.from_connection_string(connection_string).create_table(f"table{i}")
        BlobServiceClient.from_connection_string(connection_string).create_container(f"container{i}")


def test_the_wipe_deletes_every_queue_table_and_container_over_pages(stack: Any) -> None:
    fill(stack.storage, 5)
    Wiper(stack.storage, page=2).wipe()  # three pages of each
    assert stored(stack.storage) == ([], [], [])


def test_the_wipe_reconnects_when_azurite_closed_the_kept_connection(stack: Any) -> None:
    wiper = Wiper(stack.storage)
    wiper.wipe()
    for endpoint in (wiper.queues, wiper.tables, wiper.blobs):
        assert endpoint.connection is not None
        endpoint.connection.sock.shutdown(socket.SHUT_RDWR)  # as Azurite ends an idle one
    fill(stack.storage, 1)
    wiper.wipe()
    assert stored(stack.storage) == ([], [], [])


def test_the_service_storage_a_test_made_is_gone_for_the_next(stack: Any) -> None:
    """What a test leaves (the service's queues, tables and containers with rows, messages and
    blobs in them) is gone after the fixture's wipe."""
    service = stack.service()
    service.ensure_storage()
    service.requests_queue.send_message("left behind")
    service.runs.table.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
    assert all(stored(stack.storage))
    wipe_storage(stack.storage)
    assert stored(stack.storage) == ([], [], [])
