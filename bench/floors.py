"""The physical floors `make bench` divides by: what the emulator models, no product CPU.

- ARM's per-subscription token buckets (emulator/faults.py `ARM_BUCKETS`): reads 250 at once
  then 25 a second, writes 200 at once then 10 a second;
- the latency the bench puts on every Key Vault and ARM call;
- a long-running write's duration: the client may read again after its `Retry-After`.

One target alone cannot finish before the calls on its critical path have each taken the
latency (the key's read, the kind's list, the write, the read of the written resource) plus the
write's wait; a subscription's targets cannot finish before its buckets have let their calls
through (the slower of the two), and then the last write's wait and read.
"""

from __future__ import annotations

import math

from emulator.faults import ARM_BUCKETS

# The key's read (alongside the kind's list), the write, the read of the written resource.
CRITICAL_PATH_CALLS = 3
# Reads a written target needs at least: the written resource once its operation ended (its
# state before the write comes from the kind's list).
READS_PER_WRITTEN_TARGET = 1


def bucket_seconds(calls: int, kind: str) -> float:
    """Seconds ARM's bucket of `kind` ("reads", "writes") needs for `calls` past its burst."""
    size, rate = ARM_BUCKETS[kind]
    return max(0, calls - size) / rate


def one_target(latency_s: float, lro_wait_s: float) -> float:
    """One target alone: its critical path's calls, and the long-running write's wait."""
    return CRITICAL_PATH_CALLS * latency_s + lro_wait_s


def subscription(targets: int, lists: int, latency_s: float, lro_wait_s: float) -> float:
    """One subscription's `targets` written (one write each, READS_PER_WRITTEN_TARGET reads)
    after `lists` list pages: the buckets' time past their bursts, then one target's path."""
    writes = bucket_seconds(targets, "writes")
    reads = bucket_seconds(targets * READS_PER_WRITTEN_TARGET + lists, "reads")
    return max(writes, reads) + one_target(latency_s, lro_wait_s)


def unthrottled(targets: int, lanes: int, latency_s: float, lro_wait_s: float) -> float:
    """No bucket binds: `lanes` targets at a time, each one target's path."""
    return math.ceil(targets / max(1, lanes)) * one_target(latency_s, lro_wait_s)
