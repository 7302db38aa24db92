"""A bench that runs twice on one stack (profile_run's warm-up, then its measured run) reports
the second run as it is: nothing reverted, so `succeeded`. The emulator's reset puts every
consumer back on the old version under the same ids; what the first run wrote must not be
remembered by the second as writes someone undid."""

from __future__ import annotations

import pytest

from bench import mixed_kinds
from emulator import EmulatorProcess


@pytest.mark.usefixtures("stack")
def test_a_second_mixed_run_reports_no_revert(
    emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = mixed_kinds.subscriptions(1)
    monkeypatch.setenv("ROTATION_SUBSCRIPTIONS", ",".join(subs))  # restored after: run_once sets it
    first = mixed_kinds.run_once(emulator, mixed_kinds.estate(1, subs), subs, 0, False)
    second = mixed_kinds.run_once(emulator, mixed_kinds.estate(1, subs), subs, 0, False)
    assert (first["status"], first["verified"]) == ("succeeded", 1)
    assert (second["status"], second["verified"]) == ("succeeded", 1)
    # and no activity-log read: that is asked only of a consumer seen reverted
    assert not [c for c in emulator.admin.calls()["calls"] if "eventtypes/management" in c["path"]]
