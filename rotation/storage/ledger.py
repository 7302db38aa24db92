"""Table `RotationLedger`: per-key leases, processed events, replay markers, wave progress.

Lease (PartitionKey "lease", RowKey the key's slug): taken by inserting the row (it fails if
someone holds it), renewed and released with the row's ETag, taken over with the ETag once
expired or freed. Two runs that race for an expired lease both read the same ETag; only one
update can win, so runs for one key take turns, and near-expiry creates one version however
many deliveries race. The row's `Generation` counts acquisitions (a release frees the row
rather than deleting it, so the count survives): it is the fence a sharded run's shards carry
(a shard whose fence is no longer the row's generation stops).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError

from rotation.model.ids import KeyRef
from rotation.model.times import iso, parse_iso
from rotation.storage.audit import key_slug
from rotation.storage.tables import update_mode

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = logging.getLogger("rotation.ledger")
LEDGER_TABLE = "RotationLedger"
LEASE = "lease"
EVENT = "event"
REPLAY = "replay"
WAVE = "wave"
CONVERGED = ("succeeded", "needs-attention")


def _now() -> datetime:
    return datetime.now(UTC)


def _conflict(exc: HttpResponseError) -> bool:
    return exc.status_code in (409, 412)


def lease_owner(run_id: str) -> str:
    """A lease owner unique to this attempt: two live copies of one request never share a lease
    (a crashed attempt's lease is taken over once it expires)."""
    return f"{run_id}/{uuid.uuid4().hex[:12]}"


def row_key(text: str) -> str:
    """A Table-safe RowKey for any string (event ids and blob paths may hold / # ? or spaces)."""
    return hashlib.sha256(text.encode()).hexdigest()[:48]


_MARKER_NAMES = {
    "Outcome": "outcome",
    "RunId": "runId",
    "Operator": "operator",
    "ReplayedAt": "replayedAt",
    "Reason": "reason",  # a discarded item's
}


@dataclass(frozen=True)
class LeaseHeld:
    owner: str
    expires_at: datetime

    def seconds_left(self) -> float:
        return max(0.0, (self.expires_at - _now()).total_seconds())


class Lease:
    """A held lease; renew() keeps it, release() gives it back. `lost` turns true if a renewal
    finds someone else took it (the run must then stop starting new work)."""

    def __init__(
        self,
        ledger: Ledger,
        key: KeyRef,
        owner: str,
        etag: str,
        taken_at: datetime,
        taken_over_from: str | None,
        generation: int = 1,
    ) -> None:
        self.ledger, self.key, self.owner = ledger, key, owner
        self.etag = etag
        self.taken_at = taken_at
        self.taken_over_from = taken_over_from
        self.generation = generation
        self.lost = False
        self.handed_off = False  # a sharded run's shards keep the lease now (release is theirs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> bool:
        entity = lease_entity(self.key, self.owner, self.taken_at, self.ledger.lease_seconds, self.generation)
        try:
            meta = self.ledger.table.update_entity(
                entity,
                mode=update_mode().REPLACE,
                etag=self.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if _conflict(exc) or exc.status_code == 404:
                self.lost = True
                log.error("lease on %s lost to another run", self.key.versionless_id)
                return False
            raise
        self.etag = meta["etag"]
        return True

    def keep_alive(self) -> Lease:
        """Renew in the background every third of the lease until released."""
        interval = self.ledger.lease_seconds / 3

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        return
                except AzureError as exc:  # a missed renewal is retried at the next tick
                    log.warning("lease renewal for %s failed: %s", self.key.versionless_id, exc)

        self._thread = threading.Thread(target=loop, name=f"lease-{self.owner[:8]}", daemon=True)
        self._thread.start()
        return self

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def hand_off(self) -> None:
        """The run was split into shards: they renew the lease under its generation from now on,
        and the last of them releases it (run/sharding.py), so this holder lets it be."""
        self.stop_renewing()
        self.handed_off = True

    def release(self) -> None:
        self.stop_renewing()
        if self.lost or self.handed_off:
            return
        self.ledger.free(self.key, self.etag, self.generation)


class Ledger:
    def __init__(self, table: TableClient, lease_seconds: int) -> None:
        self.table = table
        self.lease_seconds = lease_seconds

    # -- leases --------------------------------------------------------------------------------
    def acquire(self, key: KeyRef, owner: str) -> Lease | LeaseHeld:
        """Take the key's lease for `owner`, or say who holds it until when."""
        key = key.versionless()
        now = _now()
        try:
            meta = self.table.create_entity(lease_entity(key, owner, now, self.lease_seconds, 1))
            return Lease(self, key, owner, meta["etag"], now, None)
        except ResourceExistsError:
            pass
        try:
            current = self.table.get_entity(LEASE, key_slug(key))
        except ResourceNotFoundError:  # deleted in between: try once more from the start
            return self.acquire(key, owner)
        expires = parse_iso(current["ExpiresAt"])
        holder = current.get("Owner") or ""
        if holder and holder != owner and expires > now:
            return LeaseHeld(holder, expires)
        generation = generation_of(current) + 1
        entity = lease_entity(key, owner, now, self.lease_seconds, generation)
        try:
            meta = self.table.update_entity(
                entity,
                mode=update_mode().REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if _conflict(exc):  # another run took it over first
                latest = self.table.get_entity(LEASE, key_slug(key))
                return LeaseHeld(latest.get("Owner", ""), parse_iso(latest["ExpiresAt"]))
            raise
        previous = None if holder in ("", owner) else holder
        return Lease(self, key, owner, meta["etag"], now, previous, generation)

    def free(self, key: KeyRef, etag: str, generation: int) -> None:
        """Give the lease back: the row stays, without an owner, so its generation keeps counting."""
        entity = {
            "PartitionKey": LEASE,
            "RowKey": key_slug(key),
            "Owner": "",
            "KeyId": key.versionless_id,
            "ExpiresAt": iso(_now()),
            "Generation": generation,
        }
        try:
            self.table.update_entity(
                entity, mode=update_mode().REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:  # taken over or freed already: nothing of ours to give
            log.info("lease release for %s: %s", key.versionless_id, exc.status_code)

    def holder(self, key: KeyRef) -> dict[str, Any] | None:
        """The lease row while someone holds it (None when free)."""
        try:
            row = dict(self.table.get_entity(LEASE, key_slug(key.versionless())))
        except ResourceNotFoundError:
            return None
        return row if row.get("Owner") else None

    def lease_row(self, key: KeyRef) -> Any | None:
        """The lease row as stored, held or free, with its ETag (None: never taken)."""
        try:
            return self.table.get_entity(LEASE, key_slug(key.versionless()))
        except ResourceNotFoundError:
            return None

    # -- processed events ------------------------------------------------------------------------
    def event_outcome(self, event_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.table.get_entity(EVENT, row_key(event_id)))
        except ResourceNotFoundError:
            return None

    def converged(self, event_id: str | None) -> dict[str, Any] | None:
        """The record of an earlier run that converged for this event, if any."""
        if not event_id:
            return None
        outcome = self.event_outcome(event_id)
        return outcome if outcome and outcome.get("Outcome") in CONVERGED else None

    def record_event(
        self, event_id: str, *, outcome: str, run_id: str, key_id: str, version: str | None
    ) -> None:
        self.table.upsert_entity(
            {
                "PartitionKey": EVENT,
                "RowKey": row_key(event_id),
                "EventId": event_id[:256],
                "Outcome": outcome,
                "RunId": run_id,
                "KeyId": key_id,
                "Version": version,
                "ProcessedAt": iso(_now()),
            }
        )

    def note_redelivery(self, earlier: Mapping[str, Any], *, source: str) -> int:
        """Count one more delivery of an event whose run converged, on the event's own row: one
        Table write, no audit trail (nothing is decided; the converged run's trail holds the
        decision). `earlier` is the row `converged` returned. Returns the redeliveries so far;
        two racing redeliveries may both count the same number (a tally, not a lock)."""
        count = int(earlier.get("Redeliveries") or 0) + 1
        self.table.upsert_entity(
            {
                "PartitionKey": EVENT,
                "RowKey": earlier["RowKey"],
                "Redeliveries": count,
                "LastRedeliveryAt": iso(_now()),
                "LastRedeliverySource": source[:64],
            },
            mode=update_mode().MERGE,
        )
        return count

    # -- replay markers (rotation/doors/replay/) ----------------------------------------------------
    @staticmethod
    def replay_marker_dict(marker: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A marker in the CLI/HTTP JSON contract's camelCase, not the Table entity's names."""
        shown = {
            name: marker[column] for column, name in _MARKER_NAMES.items() if marker and column in marker
        }
        return shown or None

    def replay_marker(self, item_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.table.get_entity(REPLAY, row_key(item_id)))
        except ResourceNotFoundError:
            return None

    def mark_replayed(self, item_id: str, **fields: Any) -> None:
        self.table.upsert_entity(
            {
                "PartitionKey": REPLAY,
                "RowKey": row_key(item_id),
                "ItemId": item_id[:1024],
                "ReplayedAt": iso(_now()),
                **fields,
            },
            mode=update_mode().REPLACE,  # the whole marker: a replay after a discard keeps no old reason
        )

    # -- wave progress (rotation/run/waves.py) ------------------------------------------------
    def wave_progress(self, key: KeyRef) -> dict[str, Any] | None:
        """The last canary wave verified for the key: {DesiredVersion, Wave, VerifiedAt, RunId}."""
        try:
            return dict(self.table.get_entity(WAVE, key_slug(key.versionless())))
        except ResourceNotFoundError:
            return None

    def record_wave(
        self, key: KeyRef, *, desired: str, wave: str, verified_at: datetime, run_id: str
    ) -> None:
        self.table.upsert_entity(
            {
                "PartitionKey": WAVE,
                "RowKey": key_slug(key.versionless()),
                "KeyId": key.versionless_id,
                "DesiredVersion": desired,
                "Wave": wave,
                "VerifiedAt": iso(verified_at),
                "RunId": run_id,
            },
            mode=update_mode().REPLACE,
        )

    def claim_soak(self, key: KeyRef, request_id: str, now: datetime, until: datetime) -> bool:
        """Make `request_id` the one request that waits out the key's soak (it is due back by
        `until`); False when another request holds that claim and is not overdue at `now`."""
        try:
            row = self.table.get_entity(WAVE, key_slug(key.versionless()))
        except ResourceNotFoundError:
            return True  # no progress row: nothing to share
        waiter, due = row.get("Waiter"), row.get("WaiterUntil")
        if waiter and waiter != request_id and due and parse_iso(due) > now:
            return False
        try:
            self.table.update_entity(
                {
                    "PartitionKey": WAVE,
                    "RowKey": row["RowKey"],
                    "Waiter": request_id,
                    "WaiterUntil": iso(until),
                },
                mode=update_mode().MERGE,
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if _conflict(exc):  # another request claimed it in between
                return False
            raise
        return True


def lease_entity(
    key: KeyRef, owner: str, taken_at: datetime, seconds: int, generation: int
) -> dict[str, Any]:
    return {
        "PartitionKey": LEASE,
        "RowKey": key_slug(key),
        "Owner": owner,
        "KeyId": key.versionless_id,
        "TakenAt": iso(taken_at),
        "ExpiresAt": iso(_now() + timedelta(seconds=seconds)),
        "Generation": generation,
    }


def generation_of(row: Mapping[str, Any]) -> int:
    """The row's acquisition count (rows written before generations count as 0)."""
    value = row.get("Generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
