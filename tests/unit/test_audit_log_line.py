"""Each audit record is also one JSON log line on `rotation.audit`, built only when emitted."""

from __future__ import annotations

import json
import logging

import pytest

from rotation.storage.audit import AuditStore, AuditTrail


class Counted:
    """A field value that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.times = 0

    def __str__(self) -> str:
        self.times += 1
        return "counted"


def trail() -> AuditTrail:
    # No key and no run id: opening the trail reads nothing; records stay pending (no flush).
    return AuditTrail(AuditStore(None, None), actor="pytest", flush_every=1000)  # type: ignore[arg-type]  # no table: never flushed


def test_a_record_is_one_json_line_when_info_is_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rotation.audit"):
        record = trail().record("plan-step", target="/subscriptions/s/x", action="update")
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rotation.audit"]
    assert line == {"audit": json.loads(json.dumps(record))}


def test_no_line_is_built_when_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    value = Counted()
    with caplog.at_level(logging.WARNING, logger="rotation.audit"):
        trail().record("warning", message=value)
    assert not [r for r in caplog.records if r.name == "rotation.audit"]
    assert value.times == 1  # the record's hash; not a log line nobody reads
