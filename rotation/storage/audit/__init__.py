"""The audit trail: one record per decision, in Table Storage and as one JSON log line.

Tamper evidence: the records of a run are chained (each carries the hash of the one before,
in the order they were decided, parallel steps included), written in batches, and after every
batch the run's head hash is anchored as a new blob in `audit-anchors` (a container that is
immutable in Azure, so whoever can write the table cannot rewrite the anchors). A run's first
record chains to the previous run of the same key. `verify` recomputes the chains against the
anchors and reports records changed, missing, or a lost tail.

Table layout (`RotationAudit`): PartitionKey = the UTC day the run started (YYYYMMDD), RowKey =
inverted record time + run id + inverted sequence, so a partition reads newest first. The
partition "heads" keeps each key's latest chain head. Key material never appears here: only
key ids and versions.
"""

from rotation.storage.audit.record import canonical_hash, key_slug
from rotation.storage.audit.store import (
    ANCHOR_CONTAINER,
    AUDIT_TABLE,
    HEADS_PARTITION,
    MAX_QUERY_DAYS,
    AuditStore,
    AuditUnavailable,
)
from rotation.storage.audit.trail import AuditTrail
from rotation.storage.audit.verify import Finding, RunningRun, verify

__all__ = [
    "ANCHOR_CONTAINER",
    "AUDIT_TABLE",
    "HEADS_PARTITION",
    "MAX_QUERY_DAYS",
    "AuditStore",
    "AuditTrail",
    "AuditUnavailable",
    "Finding",
    "RunningRun",
    "canonical_hash",
    "key_slug",
    "verify",
]
