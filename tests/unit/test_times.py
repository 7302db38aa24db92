"""The one time format and the one ISO parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rotation.model.times import iso, parse_iso, parse_iso_or_none


def test_iso_is_utc_milliseconds_and_z() -> None:
    assert iso(datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=UTC)) == "2026-11-23T10:15:00.123Z"
    plus_one = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 11, 23, 11, 15, tzinfo=plus_one)) == "2026-11-23T10:15:00.000Z"
    assert iso(datetime(2026, 11, 23, 10, 15)) == "2026-11-23T10:15:00.000Z"  # naive is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T09:15:02.4410000Z",
        "2026-11-20T09:15:02.441+00:00",
        "2026-11-20T09:15:02.441",
        " 2026-11-20T09:15:02.441Z ",
    ],
)
def test_parse_iso_reads_event_grid_and_our_own(text: str) -> None:
    assert parse_iso(text) == datetime(2026, 11, 20, 9, 15, 2, 441000, tzinfo=UTC)


def test_parse_iso_round_trips_and_refuses_rubbish() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert parse_iso(iso(moment)) == moment
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_iso("yesterday")
    assert parse_iso_or_none("yesterday") is None
    assert parse_iso_or_none(None) is None and parse_iso_or_none("") is None and parse_iso_or_none(5) is None


def test_failed_items_report_their_time_in_the_one_format() -> None:
    from rotation.doors.replay import FailedItem

    moment = datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=UTC)
    item = FailedItem("deadletter/x#1", "deadletter", "deadletter/x", moment)
    assert item.to_dict()["time"] == "2026-11-23T10:15:00.123Z"
    assert FailedItem("p", "poison", "p", None).to_dict()["time"] is None
