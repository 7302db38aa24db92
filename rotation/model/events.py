"""Key Vault events (Event Grid schema or CloudEvents 1.0) -> a validated `KeyEvent`.

Real payloads vary: data field names arrive PascalCase but are matched case-insensitively
and with whitespace trimmed; NBF/EXP may be numbers, numeric strings or absent. Anything
that is not a usable key event raises `EventRejected` with a machine-readable reason and a
sentence for the audit trail, never a stack trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotation.model.errors import RotationError
from rotation.model.ids import InvalidId, KeyRef, parse_key_id
from rotation.model.times import parse_iso_or_none

# Key Vault's event type names (azure-eventgrid's SystemEventNames values; spelled out so that
# parsing an event does not import the Event Grid SDK)
NEW_VERSION = "Microsoft.KeyVault.KeyNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.KeyNearExpiry"
EXPIRED = "Microsoft.KeyVault.KeyExpired"
KEY_EVENT_TYPES = (NEW_VERSION, NEAR_EXPIRY, EXPIRED)
_OTHER_VAULT_EVENTS = re.compile(
    r"^Microsoft\.KeyVault\.(Secret|Certificate|VaultAccessPolicy)", re.IGNORECASE
)
_PRINTABLE_ID = re.compile(r"^[\x21-\x7e]{1,256}\Z")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?\Z")
# Attributes Event Grid adds when it dead-letters an event (CloudEvents: lower case).
DEAD_LETTER_FIELDS = (
    "deadLetterReason",
    "deliveryAttempts",
    "lastDeliveryOutcome",
    "lastHttpStatusCode",
    "publishTime",
    "lastDeliveryAttemptTime",
)


@dataclass(frozen=True)
class KeyEvent:
    event_id: str
    event_type: str
    key: KeyRef  # carries the event's version
    not_before: int | None
    expires: int | None
    event_time: datetime | None
    schema: str  # "EventGridSchema" or "CloudEventSchemaV1_0"
    source: str | None

    @property
    def version(self) -> str:
        assert self.key.version is not None
        return self.key.version


class EventRejected(RotationError):
    """An input that cannot become a KeyEvent. `reason` is machine-readable."""

    def __init__(
        self, reason: str, message: str, *, event_id: str | None = None, event_type: str | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event_id = event_id
        self.event_type = event_type


VaultCheck = Callable[[str], bool]


def parse_mapping(raw: Any, vault_allowed: VaultCheck) -> KeyEvent:
    """Parse one event as delivered on the wire (a JSON object in either schema)."""
    if not isinstance(raw, Mapping):
        raise EventRejected("malformed", "an event must be a JSON object")
    fields = {str(k).strip(): v for k, v in raw.items()}
    if "specversion" in fields:
        return _build(
            fields.get("id"),
            fields.get("type"),
            fields.get("data"),
            fields.get("time"),
            "CloudEventSchemaV1_0",
            fields.get("source"),
            vault_allowed,
        )
    return _build(
        fields.get("id"),
        fields.get("eventType"),
        fields.get("data"),
        fields.get("eventTime"),
        "EventGridSchema",
        fields.get("topic"),
        vault_allowed,
    )


def parse_function_event(event: Any, vault_allowed: VaultCheck) -> KeyEvent:
    """Parse what the Functions host hands the Event Grid trigger: `func.EventGridEvent`, or
    `func.CloudEvent` for deliveries in CloudEvents schema."""
    try:
        data = event.get_json()
    except (ValueError, TypeError):
        data = None
    if hasattr(event, "specversion"):
        return _build(
            event.id, event.type, data, event.time, "CloudEventSchemaV1_0", event.source, vault_allowed
        )
    return _build(
        event.id, event.event_type, data, event.event_time, "EventGridSchema", event.topic, vault_allowed
    )


def parse_body(body: bytes | str, vault_allowed: VaultCheck) -> list[KeyEvent | EventRejected]:
    """Parse a delivery body: one event or an array of events, each parsed on its own."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return [EventRejected("malformed", f"the body is not JSON: {exc}")]
    items = payload if isinstance(payload, list) else [payload]
    results: list[KeyEvent | EventRejected] = []
    for item in items:
        try:
            results.append(parse_mapping(item, vault_allowed))
        except EventRejected as rejected:
            results.append(rejected)
    return results


Reject = Callable[[str, str], EventRejected]


def _build(
    event_id: Any,
    event_type: Any,
    data: Any,
    event_time: Any,
    schema: str,
    source: Any,
    vault_allowed: VaultCheck,
) -> KeyEvent:
    event_id = event_id.strip() if isinstance(event_id, str) else event_id
    event_type = event_type.strip() if isinstance(event_type, str) else event_type
    shown_id = event_id if isinstance(event_id, str) and _PRINTABLE_ID.match(event_id) else None

    def reject(reason: str, message: str) -> EventRejected:
        return EventRejected(
            reason, message, event_id=shown_id, event_type=event_type if isinstance(event_type, str) else None
        )

    if not isinstance(event_id, str) or not _PRINTABLE_ID.match(event_id):
        raise reject("malformed", "the event id is missing or not 1-256 printable characters")
    canonical_type = _key_event_type(event_type, reject)
    fields = _data_fields(data, reject)
    key = _event_key(fields, reject)
    if not vault_allowed(key.vault_host):
        raise reject("vault-not-allowed", f"vault {key.vault_host} is not in ROTATION_ALLOWED_VAULTS")
    return KeyEvent(
        event_id=event_id,
        event_type=canonical_type,
        key=key,
        not_before=_epoch(fields.get("nbf"), "NBF", reject),
        expires=_epoch(fields.get("exp"), "EXP", reject),
        event_time=event_time if isinstance(event_time, datetime) else parse_iso_or_none(event_time),
        schema=schema,
        source=source if isinstance(source, str) else None,
    )


def _key_event_type(event_type: Any, reject: Reject) -> str:
    """The canonical spelling of a key event type; anything else is refused, saying why."""
    if not isinstance(event_type, str) or not event_type:
        raise reject("malformed", "the event type is missing")
    canonical_type = next((t for t in KEY_EVENT_TYPES if t.lower() == event_type.lower()), None)
    if canonical_type is not None:
        return canonical_type
    if _OTHER_VAULT_EVENTS.match(event_type):
        raise reject(
            "unsupported-type",
            f"{event_type} is not a key event; only key versions are rotated "
            "(filter the event subscription to key events)",
        )
    raise reject(
        "unsupported-type",
        f"event type {event_type!r} is not handled; expected one of {', '.join(KEY_EVENT_TYPES)}",
    )


def _data_fields(data: Any, reject: Reject) -> dict[str, Any]:
    """The event data as a JSON object, names lower-case, text stripped."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            raise reject("malformed", "the event data is not a JSON object") from None
    if not isinstance(data, Mapping):
        raise reject("malformed", "the event data is missing or not a JSON object")
    fields = {str(k).strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in data.items()}
    object_type = fields.get("objecttype")
    if object_type is not None and str(object_type).lower() != "key":
        raise reject("unsupported-type", f"ObjectType {object_type!r} is not Key")
    return fields


def _event_key(fields: Mapping[str, Any], reject: Reject) -> KeyRef:
    """The versioned key the event names; its other name fields must agree with data.Id."""
    try:
        key = parse_key_id(fields.get("id"), require_version=True)
    except InvalidId as exc:
        raise reject("malformed", f"data.Id: {exc}") from None
    for field_name, expected in (
        ("vaultname", key.vault_host.split(".")[0]),
        ("objectname", key.name),
        ("version", key.version),
    ):
        given = fields.get(field_name)
        if given not in (None, "") and str(given).lower() != str(expected).lower():
            raise reject("malformed", f"data.{field_name} {given!r} does not match data.Id {key.id}")
    return key


def _epoch(value: Any, name: str, reject: Reject) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise reject("malformed", f"data.{name} must be epoch seconds, got {value!r}")
    try:
        if isinstance(value, int | float):
            number = int(value)
        elif isinstance(value, str) and _NUMBER.match(value):
            number = int(float(value))
        else:
            number = None
    except (OverflowError, ValueError):  # inf, nan, absurdly large
        number = None
    if number is None or not 0 <= number < 2**40:
        raise reject("malformed", f"data.{name} must be epoch seconds, got {str(value)[:40]!r}")
    return number


def strip_dead_letter_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The original event from a dead-letter entry (Event Grid or CloudEvents casing)."""
    names = {n.lower() for n in DEAD_LETTER_FIELDS}
    return {k: v for k, v in raw.items() if str(k).lower() not in names}
