"""storage/written.py's VerifiedAsTheyGo: a run's verified versions written in a background thread
as they come (group commit: every few seconds, at once when enough wait, all at the close), and
no more tries once a write failed (the run's end writes them)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, cast

from rotation.model.ids import parse_key_id
from rotation.storage.written import VerifiedAsTheyGo, WrittenStore
from tests import scenarios as s

KEY = parse_key_id(s.key_id("acr-cmk"))


class Recording:
    """A WrittenStore's `record_verified` that keeps what it was given, held until the test lets
    it go (`release`), then fails when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[tuple[str, str]]] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail = fail

    def record_verified(self, key: Any, targets: Any, run_id: str, at: datetime) -> None:
        self.calls.append(list(targets))
        self.entered.set()
        assert self.release.wait(timeout=30), "never let go"
        if self.fail:
            raise ConnectionError("storage down")


def writer(store: Recording, every: float = 0.0, at_rows: int = 1600) -> VerifiedAsTheyGo:
    return VerifiedAsTheyGo(cast("WrittenStore", store), KEY, "run-1", every=every, at_rows=at_rows)


def test_versions_verified_within_the_pause_go_in_one_write_at_the_close() -> None:
    """Not a transaction per version: at N = 1,000 that cost 1.4 ms of CPU a consumer."""
    store = Recording()
    store.release.set()
    rows = writer(store, every=600)
    for target in ("a", "b", "c"):
        rows.add(target, "v")
    assert rows.close() == {("a", "v"), ("b", "v"), ("c", "v")}  # the close does not wait the pause out
    assert store.calls == [[("a", "v"), ("b", "v"), ("c", "v")]]


def test_enough_waiting_versions_go_without_waiting_for_the_pause() -> None:
    store = Recording()
    store.release.set()
    rows = writer(store, every=600, at_rows=3)
    for target in ("a", "b", "c", "d"):
        rows.add(target, "v")
        if target == "c":
            assert store.entered.wait(timeout=30), "three waited, and were not written"
    assert rows.close() == {("a", "v"), ("b", "v"), ("c", "v"), ("d", "v")}
    assert store.calls == [[("a", "v"), ("b", "v"), ("c", "v")], [("d", "v")]]


def test_what_verifies_while_a_write_is_under_way_goes_in_the_next_one() -> None:
    store = Recording()
    rows = writer(store)
    rows.add("a", "v")
    assert store.entered.wait(timeout=30)  # the first version went out at once
    for target in ("b", "c", "d"):
        rows.add(target, "v")
    store.release.set()
    assert rows.close() == {("a", "v"), ("b", "v"), ("c", "v"), ("d", "v")}
    assert store.calls == [[("a", "v")], [("b", "v"), ("c", "v"), ("d", "v")]]


def test_after_a_failed_write_none_is_tried_and_none_is_counted_stored() -> None:
    """The storage is likely down: what waited behind the failed write is left to the run's end
    (RevertWatch.remember writes every verified version not counted stored)."""
    store = Recording(fail=True)
    rows = writer(store)
    rows.add("a", "v")
    assert store.entered.wait(timeout=30)
    rows.add("b", "v")  # waits behind the write under way, which fails
    store.release.set()
    assert rows.close() == set()
    assert store.calls == [[("a", "v")]]


def test_a_version_verified_after_the_close_is_let_go_without_an_error() -> None:
    """A step cut at a stop goes on in its thread and may verify after the run closed the
    writer: its pool is shut down, so a write started then would raise in that thread."""
    store = Recording()
    store.release.set()
    rows = writer(store)
    assert rows.close() == set()
    rows.add("late", "v")
    assert store.calls == []
