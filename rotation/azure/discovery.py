"""Find the consumers of keys: one paged ARM list per resource kind and subscription, all in
parallel, or (ROTATION_DISCOVERY) one Resource Graph query across subscriptions for the kinds
read from the resource alone; matched to a key by vault host and key name (case-insensitively),
whatever version they hold. Failures are kept per scope and kind, so one unreadable
subscription does not hide the consumers in the others."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rotation.azure import resourcegraph
from rotation.azure.kinds import Consumer, TargetKind, all_kinds, read_for_key
from rotation.azure.kinds.armkind import ArmTargetKind, each_read
from rotation.azure.retry import Deadline, RetryPolicy, call, classify
from rotation.concurrency import map_in_context
from rotation.model.consumer import Unreadable
from rotation.model.decisions import UNREADABLE as UNREADABLE_CODE
from rotation.model.errors import ErrorInfo
from rotation.model.ids import KeyRef, ResourceId

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


@dataclass(frozen=True)
class DiscoveryError:
    scope: str  # subscription id or resource id
    kind: str
    error: ErrorInfo


@dataclass(frozen=True)
class Inventory:
    consumers: tuple[Consumer, ...]
    errors: tuple[DiscoveryError, ...] = ()
    not_consumers: tuple[str, ...] = ()  # requested targets that do not use the key

    def for_key(self, key: KeyRef) -> Inventory:
        return Inventory(
            tuple(c for c in self.consumers if c.key.same_key(key)), self.errors, self.not_consumers
        )

    def lagging(self) -> Inventory:
        """The same consumers, marked as read a while ago: each write reads its target first."""
        return Inventory(
            tuple(replace(c, lagging=True) for c in self.consumers), self.errors, self.not_consumers
        )

    def keys(self) -> dict[tuple[str, str], KeyRef]:
        """Every key some consumer uses, by identity."""
        found: dict[tuple[str, str], KeyRef] = {}
        for consumer in self.consumers:
            found.setdefault(consumer.key.identity, consumer.key.versionless())
        return found


# ROTATION_DISCOVERY=auto takes Resource Graph from this many subscriptions on: below it the ARM
# lists (about ten per subscription, run in parallel, each from its own subscription's read
# budget) are few and fresh; from it on they grow by ten per subscription while one query
# answers up to 1,000 subscriptions a page at a time (docs/scaling.md has the measurements).
GRAPH_FROM_SUBSCRIPTIONS = 20
GRAPH_SCOPE = "resourcegraph"


def uses_graph(discovery: str, subscriptions: int) -> bool:
    return discovery == "resourcegraph" or (discovery == "auto" and subscriptions >= GRAPH_FROM_SUBSCRIPTIONS)


def list_consumers(
    clients: Clients,
    subscriptions: Iterable[str],
    *,
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    kinds: list[TargetKind] | None = None,
    workers: int = 8,
    discovery: str = "arm",
) -> Inventory:
    """Every resource using a customer-managed key in these subscriptions."""
    kinds = kinds or all_kinds()
    subscriptions = list(subscriptions)
    graphed: list[ArmTargetKind] = (
        [k for k in kinds if isinstance(k, ArmTargetKind) and k.from_rows]
        if uses_graph(discovery, len(subscriptions))
        else []
    )
    jobs: list[tuple[str, TargetKind | None]] = [
        (subscription, kind) for subscription in subscriptions for kind in kinds if kind not in graphed
    ]
    if graphed:
        jobs.append((GRAPH_SCOPE, None))  # one job: the query for every graphed kind

    def one(job: tuple[str, TargetKind | None]) -> tuple[list[Consumer], list[DiscoveryError]]:
        subscription, kind = job
        if kind is None:
            return _from_graph(clients, subscriptions, graphed, policy, deadline)
        try:
            found = call(
                lambda: list(kind.list(clients, subscription)),
                policy=policy,
                deadline=deadline,
                what=f"list {kind.kind} in {subscription}",
            )
        except Exception as exc:  # noqa: BLE001 - kept per scope and reported; the other scopes go on
            return [], [DiscoveryError(subscription, kind.kind, classify(exc))]
        readable = [c for c in found if isinstance(c, Consumer)]
        return readable, [_unreadable(u) for u in found if isinstance(u, Unreadable)]

    consumers: list[Consumer] = []
    errors: list[DiscoveryError] = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        for found, problems in map_in_context(pool, one, jobs):
            consumers.extend(found)
            errors.extend(problems)
    consumers.sort(key=lambda c: c.resource_id.key)
    return Inventory(tuple(consumers), tuple(errors))


def _from_graph(
    clients: Clients,
    subscriptions: list[str],
    kinds: list[ArmTargetKind],
    policy: RetryPolicy,
    deadline: Deadline | None,
) -> tuple[list[Consumer], list[DiscoveryError]]:
    """The graphed kinds' consumers from one Resource Graph query, each row read by its kind."""
    by_type = {kind.resource_type.lower(): kind for kind in kinds}
    try:
        rows = call(
            lambda: list(
                resourcegraph.query_rows(
                    clients.arm(),
                    subscriptions,
                    by_type,
                    max_wait=policy.max_retry_after,
                )
            ),
            policy=policy,
            deadline=deadline,
            what=f"query Resource Graph over {len(subscriptions)} subscription(s)",
        )
    except Exception as exc:  # noqa: BLE001 - kept and reported for each kind it would have found
        info = classify(exc)
        return [], [DiscoveryError(GRAPH_SCOPE, kind.kind, info) for kind in kinds]
    grouped: dict[str, list[dict[str, object]]] = {t: [] for t in by_type}
    for row in rows:
        grouped.get(str(row.get("type") or "").lower(), []).append(row)
    found = [f for t, kind in by_type.items() for f in each_read(kind.kind, grouped[t], kind.to_consumers)]
    return [replace(c, lagging=True) for c in found if isinstance(c, Consumer)], [
        _unreadable(u) for u in found if isinstance(u, Unreadable)
    ]


def _unreadable(found: Unreadable) -> DiscoveryError:
    """A listed resource its kind could not read: it may hold any key, so every plan shows it
    (not a scope that could not be reached: a retry reads the same data)."""
    info = ErrorInfo(False, False, None, UNREADABLE_CODE, f"could not read the resource: {found.message}")
    return DiscoveryError(found.resource, found.kind, info)


def read_targets(
    clients: Clients,
    key: KeyRef,
    targets: Iterable[ResourceId],
    *,
    policy: RetryPolicy,
    deadline: Deadline | None = None,
    kinds: list[TargetKind] | None = None,
    workers: int = 8,
) -> Inventory:
    """Read just these resources (a run limited to targets), keeping those that use `key`."""
    by_type = {kind.resource_type.lower(): kind for kind in (kinds or all_kinds())}
    targets = list(targets)

    def one(resource_id: ResourceId) -> tuple[Consumer | None, DiscoveryError | None]:
        kind = by_type[resource_id.full_type.lower()]
        try:
            return call(
                lambda: read_for_key(kind, clients, resource_id, key),
                policy=policy,
                deadline=deadline,
                what=f"read {resource_id}",
            ), None
        except Exception as exc:  # noqa: BLE001 - reported per target
            return None, DiscoveryError(str(resource_id), kind.kind, classify(exc))

    consumers, errors, strangers = [], [], []
    if not targets:
        return Inventory(())
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
        for resource_id, (consumer, error) in zip(targets, map_in_context(pool, one, targets), strict=True):
            if error:
                errors.append(error)
            elif consumer is None or not consumer.key.same_key(key):
                strangers.append(str(resource_id))
            else:
                consumers.append(consumer)
    return Inventory(tuple(consumers), tuple(errors), tuple(strangers))
