"""`audit verify`'s unfinished runs: a run still marked running is under way only while it holds
its key's lease (storage/audit/verify.py), without Azurite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotation.storage.audit.verify import RunningRun, unfinished_runs

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
KEY = "https://contoso-cmk.vault.azure.net/keys/acr-cmk"


def unfinished(owner: str | None, expires: datetime | None, run_ids: list[str] | None = None) -> list[str]:
    run = RunningRun("run-1", KEY, owner, expires)
    return [f.run_id for f in unfinished_runs([run], NOW, run_ids)]


def test_a_run_holding_a_live_lease_is_under_way() -> None:
    assert unfinished("run-1/abc", NOW + timedelta(seconds=30)) == []


def test_a_run_whose_lease_expired_or_is_another_runs_or_is_gone_is_unfinished() -> None:
    assert unfinished("run-1/abc", NOW - timedelta(seconds=1)) == ["run-1"]
    assert unfinished("run-10/abc", NOW + timedelta(seconds=30)) == ["run-1"]  # a prefix is not the run
    assert unfinished(None, None) == ["run-1"]


def test_only_the_runs_asked_for_are_reported() -> None:
    assert unfinished(None, None, run_ids=["other"]) == []
