"""Replay of failed work, for on-call engineers.

Failed work ends in two places:
1. Event Grid dead letters: blobs `eventgrid-deadletters/<SUBSCRIPTION>/YYYY/M/D/H/<guid>.json`,
   each a JSON array of the original events plus `deadLetterReason`, `deliveryAttempts`,
   `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime`, `lastDeliveryAttemptTime`
   (lower case in CloudEvents schema).
2. The poison queue `rotation-requests-poison`: requests that failed every attempt. Queue
   messages expire and can only be peeked 32 at a time, so they are first moved into blobs
   `rotation-poison/YYYY/MM/DD/<message id>.json` (blob written, then the message deleted:
   stopping between the two loses nothing; the copy is idempotent by message id).

Both are listed together; replay re-processes selected items oldest first through the same
reconcile path as live events (reconcile works from current state, so an old event moves
consumers to the newest version, never back). Each replayed item gets a ledger marker keyed by
its blob path (and event id), holding outcome, time and operator, so a second replay skips it
unless forced. Malformed blobs are reported and left in place; nothing is ever deleted.
"""

from rotation.doors.replay.deadletters import dead_letters
from rotation.doors.replay.discarding import DiscardRefused, discard
from rotation.doors.replay.items import FailedItem, Selection, pick
from rotation.doors.replay.listing import list_failed
from rotation.doors.replay.poison import archive_poison, last_failure, move_poison, poison_items
from rotation.doors.replay.replaying import ReplayOutcome, Runner, already_done, replay, request_for

__all__ = [
    "DiscardRefused",
    "FailedItem",
    "ReplayOutcome",
    "Runner",
    "Selection",
    "already_done",
    "archive_poison",
    "dead_letters",
    "discard",
    "last_failure",
    "list_failed",
    "move_poison",
    "pick",
    "poison_items",
    "replay",
    "request_for",
]
