"""The audit record: its fields, how it is stored as a Table entity, its canonical form and hash.
Pure (no I/O): the store only writes and reads what this module shapes, and verify recomputes
hashes with it.

Each record names the scheme it was hashed under (`scheme`), so a change to the canonical form
never makes old records look edited: records without one are scheme 1 (the twenty decision
fields); scheme 2 also hashes the scheme and the partition the record is filed under (the day
`audit list` reads it from)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from rotation.model.ids import KeyRef
from rotation.model.times import parse_iso

FIELDS = (
    "time",
    "kind",
    "runId",
    "seq",
    "prevHash",
    "actor",
    "keyId",
    "fromVersion",
    "toVersion",
    "target",
    "action",
    "reason",
    "outcome",
    "errorCode",
    "message",
    "hint",
    "durationMs",
    "eventId",
    "source",
    "detail",
)
SCHEME = 2
_HASHED = {None: FIELDS, 1: FIELDS, 2: (*FIELDS, "scheme", "partition")}
ENTITY_NAMES = {f: f[0].upper() + f[1:] for f in (*FIELDS, "scheme", "hash")}
MAX_TEXT = 4000
MAX_DETAIL = 16000  # characters of JSON; a Table string property holds 32K
_MAX_MS = 10**13


class UnknownScheme(ValueError):
    """A record names a scheme this version cannot recompute."""


# The encoders `json.dumps` would build for these options on every call, built once (an
# encoder keeps only its options: thread-safe).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_SORTED = json.JSONEncoder(sort_keys=True, default=str)
_SORTED_STRICT = json.JSONEncoder(sort_keys=True)
_PLAIN = (str, int, bool, type(None))  # values JSON gives back as they were


def canonical_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON under the scheme it names. Raises UnknownScheme."""
    scheme = record.get("scheme")
    fields = _HASHED.get(scheme) if isinstance(scheme, int | None) and not isinstance(scheme, bool) else None
    if fields is None:
        raise UnknownScheme(f"unknown audit record scheme {scheme!r}")
    content = {k: record.get(k) for k in fields}
    return hashlib.sha256(_CANONICAL.encode(content).encode()).hexdigest()


def key_slug(key: KeyRef | str | None) -> str:
    """A Table-safe, stable name for a key (hosts and names compared case-insensitively)."""
    if key is None:
        return "none"
    text = key.versionless_id if isinstance(key, KeyRef) else str(key)
    return hashlib.sha256(text.lower().encode()).hexdigest()[:32]


def clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    return value


def bounded_detail(detail: Any) -> Any:
    """`detail` as plain JSON values, small enough for a Table property; done before hashing so
    what is stored is exactly what was hashed."""
    if detail is None:
        return None
    if _small_and_flat(detail):  # what the JSON round trip would give back: the keys sorted
        return dict(sorted(detail.items()))
    text = _SORTED.encode(detail)
    if len(text) <= MAX_DETAIL:
        return json.loads(text)
    return {"truncated": True, "preview": text[:MAX_TEXT]}


def _small_and_flat(detail: Any) -> bool:
    """A dict of str keys and str, int, bool or None values (exactly those types: a subclass
    such as an Enum is JSON's to convert) whose JSON is surely within MAX_DETAIL: a character
    takes at most six (an escape), an int its digits, every item eight more (its quotes and
    separators)."""
    if type(detail) is not dict:
        return False
    size = 2
    for name, value in detail.items():
        if type(name) is not str or type(value) not in _PLAIN:
            return False
        size += 6 * len(name) + 8 + (6 * len(value) if type(value) is str else len(str(value)))
    return size <= MAX_DETAIL


def to_entity(partition: str, record: dict[str, Any]) -> dict[str, Any]:
    moment = parse_iso(record["time"])
    inverted = _MAX_MS - int(moment.timestamp() * 1000)
    row = f"{inverted:013d}-{record['runId']}-{999999 - record['seq']:06d}"
    entity = {"PartitionKey": partition, "RowKey": row}
    for name, column in ENTITY_NAMES.items():
        value = record.get(name)
        if name == "detail" and value is not None:
            value = _SORTED_STRICT.encode(value)
        if value is not None:
            entity[column] = value  # bounded when recorded: never altered after hashing
    # Case-folded copies for queries (ARM and Key Vault ids compare case-insensitively);
    # derived, so not part of the hash.
    if record.get("keyId"):
        entity["KeyNorm"] = record["keyId"].lower()
    if record.get("target"):
        entity["TargetNorm"] = record["target"].lower()
    return entity


def from_entity(entity: dict[str, Any]) -> dict[str, Any]:
    record = {name: entity.get(column) for name, column in ENTITY_NAMES.items()}
    detail = record.get("detail")
    if isinstance(detail, str) and detail:
        with contextlib.suppress(ValueError, RecursionError):
            record["detail"] = json.loads(detail)
    record["partition"] = entity.get("PartitionKey")
    return record
