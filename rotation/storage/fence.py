"""A shard's hold on its parent run's lease (run/sharding.py).

The parent run keeps the key's lease while its shards run: the lease row still names the
parent's owner, and its `Generation` is the fence each shard request carries. A shard holds
the lease while the row is that very lease (same generation, the parent's owner); it renews
it under the row's current ETag (siblings renew the same row, so an ETag that moved is not
a loss, a generation that moved is). When another run took the lease since (it expired, or
the run closed and released it), the fence is stale: the shard stops without writing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError

from rotation.model.ids import KeyRef
from rotation.model.times import parse_iso
from rotation.storage.ledger import Lease, Ledger, generation_of, lease_entity

log = logging.getLogger("rotation.fence")
_RENEW_TRIES = 5  # siblings renewing the same row at once: each try reads the newest ETag


def parent_owns(row: Any, parent_run_id: str, fence: int) -> bool:
    """The lease row is the parent's lease of generation `fence` (held, even past its expiry:
    nobody took it since)."""
    owner = str(row.get("Owner") or "")
    return generation_of(row) == fence and owner.startswith(f"{parent_run_id}/")


class FencedLease(Lease):
    """The parent's lease as one shard holds it: renewed only while the fence holds; never
    released by the shard (the shard that closes the run releases it: `release_parent`)."""

    def __init__(self, ledger: Ledger, key: KeyRef, row: Any, parent_run_id: str, fence: int) -> None:
        taken = parse_iso(row["TakenAt"]) if row.get("TakenAt") else datetime.now(UTC)
        super().__init__(ledger, key, str(row["Owner"]), row.metadata["etag"], taken, None, fence)
        self.parent_run_id = parent_run_id

    def renew(self) -> bool:
        for _ in range(_RENEW_TRIES):
            row = self.ledger.lease_row(self.key)
            if row is None or not parent_owns(row, self.parent_run_id, self.generation):
                self.lost = True
                log.error(
                    "shard of run %s: the lease on %s moved on (fence %d)",
                    self.parent_run_id,
                    self.key.versionless_id,
                    self.generation,
                )
                return False
            entity = lease_entity(
                self.key, self.owner, self.taken_at, self.ledger.lease_seconds, self.generation
            )
            from azure.data.tables import UpdateMode  # with the first write, not with function_app

            try:
                meta = self.ledger.table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=row.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if exc.status_code in (404, 409, 412):
                    continue  # a sibling renewed (or someone took it): read again and decide
                raise
            self.etag = meta["etag"]
            return True
        return True  # siblings keep renewing it: the lease is alive

    def release(self) -> None:
        self.stop_renewing()


def hold(ledger: Ledger, key: KeyRef, parent_run_id: str, fence: int) -> FencedLease | None:
    """The parent's lease for a shard, renewed now; None when the fence is stale."""
    row = ledger.lease_row(key)
    if row is None or not parent_owns(row, parent_run_id, fence):
        return None
    lease = FencedLease(ledger, key.versionless(), row, parent_run_id, fence)
    return lease if lease.renew() else None


def release_parent(ledger: Ledger, key: KeyRef, parent_run_id: str, fence: int) -> bool:
    """Free the parent's lease once its last shard ended (False: it had moved on already)."""
    row = ledger.lease_row(key)
    if row is None or not parent_owns(row, parent_run_id, fence):
        return False
    ledger.free(key.versionless(), row.metadata["etag"], fence)
    return True
