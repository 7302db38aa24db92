"""The one way times are written and read: ISO 8601 UTC with milliseconds and a `Z`
(`2026-11-23T10:15:00.123Z`), the shape of the queue message's `enqueuedAt` (DESIGN.md
section 7), run records and audit records."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_EXTRA_DIGITS = re.compile(r"(\.\d{6})\d+")


def iso(moment: datetime) -> str:
    """`moment` in UTC, milliseconds, `Z`. A naive moment is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(moment: datetime | None) -> str | None:
    """`iso(moment)`, or None for no moment (optional fields of reports and rows)."""
    return iso(moment) if moment is not None else None


def utc_now() -> str:
    return iso(datetime.now(UTC))


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time, aware (UTC when it names no zone). Accepts `Z` and the seven
    fractional digits Event Grid sends. Raises ValueError for anything else."""
    cleaned = _EXTRA_DIGITS.sub(r"\1", text.strip().replace("Z", "+00:00"))
    moment = datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_iso_or_none(value: object) -> datetime | None:
    """`parse_iso` for untrusted input: None for anything that is not an ISO 8601 string."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None
