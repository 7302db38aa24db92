"""CloudEvents as the outcome topic receives them (structured JSON mode, CloudEvents 1.0)."""

from __future__ import annotations

from datetime import UTC, datetime

from azure.core.messaging import CloudEvent

from rotation.azure.topic import cloud_event_json


def test_a_cloud_event_in_structured_json() -> None:
    event = CloudEvent(
        source="/cmk-rotation",
        type="Rotation.Completed",
        subject="https://contoso-cmk.vault.azure.net/keys/k",
        data={"status": "succeeded"},
        time=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        id="e1",
    )
    assert cloud_event_json(event) == {
        "specversion": "1.0",
        "id": "e1",
        "source": "/cmk-rotation",
        "type": "Rotation.Completed",
        "time": "2026-11-23T10:00:00.000Z",
        "subject": "https://contoso-cmk.vault.azure.net/keys/k",
        "data": {"status": "succeeded"},
    }


def test_absent_attributes_are_left_out_and_extensions_kept() -> None:
    event: CloudEvent[None] = CloudEvent(source="/s", type="T", data=None, extensions={"runid": "r1"})
    body = cloud_event_json(event)
    assert "subject" not in body and "data" not in body and body["runid"] == "r1"
    assert body["id"] and body["specversion"] == "1.0"
