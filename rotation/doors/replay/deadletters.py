"""Event Grid dead letters as failed items: blobs `eventgrid-deadletters/<SUBSCRIPTION>/YYYY/M/D/H/<guid>.json`,
each a JSON array of the original events plus the delivery facts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError

from rotation.doors.replay.items import FailedItem, Selection, as_int, lower_keys, path_time
from rotation.model.events import EventRejected, parse_mapping, strip_dead_letter_fields
from rotation.model.times import parse_iso_or_none
from rotation.service import DEADLETTER_CONTAINER, Service


def dead_letters(service: Service, selection: Selection) -> list[FailedItem]:
    container = service.clients.blobs().get_container_client(DEADLETTER_CONTAINER)
    items: list[FailedItem] = []
    try:
        blobs = list(container.list_blobs())
    except ResourceNotFoundError:
        return []
    for blob in blobs:
        hour = path_time(blob.name)
        if hour and selection.until and hour > selection.until:
            continue
        if hour and selection.since and hour.timestamp() + 3600 < selection.since.timestamp():
            continue
        items.extend(
            _parse_dead_letter_blob(service, blob.name, container.download_blob(blob.name).readall(), hour)
        )
    return items


def _parse_dead_letter_blob(
    service: Service, name: str, content: bytes, hour: datetime | None
) -> list[FailedItem]:
    location = f"{DEADLETTER_CONTAINER}/{name}"
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        return [FailedItem(location, "deadletter", location, hour, error=f"malformed blob: {exc}")]
    entries = payload if isinstance(payload, list) else [payload]
    items = []
    for index, raw in enumerate(entries):
        if not isinstance(raw, Mapping):
            items.append(
                FailedItem(
                    f"{location}#{index}",
                    "deadletter",
                    location,
                    hour,
                    error="malformed entry: not a JSON object",
                )
            )
            continue
        meta = lower_keys(raw)
        event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        item = FailedItem(
            item_id=f"{location}#{event_id or index}",
            source="deadletter",
            location=location,
            time=parse_iso_or_none(meta.get("publishtime"))
            or parse_iso_or_none(meta.get("lastdeliveryattempttime"))
            or hour,
            event_id=event_id,
            event_type=raw.get("eventType") or raw.get("type"),
            reason=meta.get("deadletterreason"),
            attempts=as_int(meta.get("deliveryattempts")),
            last_outcome=meta.get("lastdeliveryoutcome"),
            last_status=as_int(meta.get("lasthttpstatuscode")),
        )
        try:
            event = parse_mapping(strip_dead_letter_fields(raw), service.settings.vault_allowed)
        except EventRejected as rejected:
            item.error = f"{rejected.reason}: {rejected.message}"
        else:
            item.event, item.key_id, item.version = event, event.key.versionless_id, event.version
            item.event_type = event.event_type
        items.append(item)
    return items
