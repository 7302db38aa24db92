"""Gathering: every read a plan needs, and nothing else. The key's state from Key Vault, its
consumers from ARM (listed across subscriptions, or just the requested targets), and the
consumers an interrupted write left missing (found by their kinds, e.g. saved redeploy
specs). Key Vault and ARM are read at the same time: neither needs the other's answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotation.azure.discovery import Inventory, list_consumers, read_targets
from rotation.azure.kinds import TargetKind, pending
from rotation.azure.retry import Deadline, RetryPolicy, call, classify
from rotation.azure.vault import read_key_state
from rotation.concurrency import submit_in_context
from rotation.config import Settings
from rotation.model.consumer import Consumer
from rotation.model.errors import ErrorInfo, ServiceFailed
from rotation.model.ids import KeyRef, parse_resource_id
from rotation.model.keystate import KeyState
from rotation.model.results import error_dict

if TYPE_CHECKING:
    from rotation.azure.clients import Clients


class Unreachable(ServiceFailed):
    """Key Vault or ARM could not be read, so no plan can be trusted."""


@dataclass(frozen=True)
class Gathered:
    """What the planner decides from: values only."""

    state: KeyState
    inventory: Inventory
    pending: tuple[Consumer, ...] = ()  # resources to bring back first (interrupted writes)
    errors: tuple[dict[str, Any], ...] = ()  # where finding `pending` failed
    warnings: tuple[str, ...] = ()


# Runs between reading the key and planning (near-expiry renewal), knowing who uses the key;
# returns the state to plan with.
Maintain = Callable[[KeyState, Inventory], KeyState]


class Gatherer:
    def __init__(
        self, settings: Settings, clients: Clients, kinds: Mapping[str, TargetKind], retry: RetryPolicy
    ) -> None:
        self.settings, self.clients, self.kinds, self.retry = settings, clients, kinds, retry

    def read_state(self, key: KeyRef, deadline: Deadline | None = None) -> KeyState:
        try:
            return call(
                lambda: read_key_state(self.clients.keys(key.vault_url), key),
                policy=self.retry,
                deadline=deadline,
                what=f"read {key.versionless_id}",
            )
        except Exception as exc:
            raise Unreachable(f"reading {key.versionless_id}", classify(exc)) from exc

    def inventory(self, key: KeyRef, targets: tuple[str, ...] | None, deadline: Deadline | None) -> Inventory:
        if targets is not None:
            ids = [parse_resource_id(t, [k.resource_type for k in self.kinds.values()]) for t in targets]
            return read_targets(
                self.clients,
                key,
                ids,
                policy=self.retry,
                deadline=deadline,
                kinds=list(self.kinds.values()),
                workers=self.settings.concurrency,
            )
        inventory = list_consumers(
            self.clients,
            self.settings.subscriptions,
            policy=self.retry,
            deadline=deadline,
            kinds=list(self.kinds.values()),
            workers=self.settings.concurrency,
            discovery=self.settings.discovery,
        )
        return inventory.for_key(key)

    def gather(
        self,
        key: KeyRef,
        targets: tuple[str, ...] | None,
        deadline: Deadline | None,
        maintain: Maintain | None = None,
        listed: Inventory | None = None,
    ) -> Gathered:
        """Read everything; raises Unreachable (or what `maintain` raises) when Key Vault fails.
        `listed`: the consumers a preview found moments ago, used instead of listing again."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            find = (
                (lambda: listed.lagging())
                if listed is not None
                else (lambda: self.inventory(key, targets, deadline))
            )
            listing = submit_in_context(pool, find)
            try:
                state = self.read_state(key, deadline)
                # The renewal waits for the listing: a consumer's kind may forbid what it would do
                # (a MySQL server refuses a key with an expiry).
                inventory = listing.result()
                if maintain is not None:
                    state = maintain(state, inventory)
            except Exception:
                listing.cancel()
                raise
        return self.with_pending(key, state, inventory, targets)

    def with_pending(
        self, key: KeyRef, state: KeyState, inventory: Inventory, targets: tuple[str, ...] | None
    ) -> Gathered:
        """Add what each kind reports missing; a store it cannot read is reported, never fatal."""
        seen = {c.resource_id.key for c in inventory.consumers}
        wanted = {t.lower() for t in targets} if targets is not None else None
        found: list[Consumer] = []
        errors: list[dict[str, Any]] = []
        warnings: list[str] = []
        for kind in self.kinds.values():
            try:
                missing = pending(kind, self.clients, key)
            except Exception as exc:  # noqa: BLE001 - an unreadable store must not stop the run
                _report(kind, classify(exc), errors, warnings)
                continue
            found += [
                c
                for c in missing
                if c.resource_id.key not in seen and (not wanted or c.resource_id.key in wanted)
            ]
        return Gathered(state, inventory, tuple(found), tuple(errors), tuple(warnings))


def _report(kind: TargetKind, info: ErrorInfo, errors: list[dict[str, Any]], warnings: list[str]) -> None:
    store = getattr(kind, "pending_store", None) or kind.kind
    if info.status == 403:  # e.g. an operator without read on it: nothing to finish that we can see
        warnings.append(
            f"cannot read {store} ({info.summary()}): interrupted {kind.kind} writes are not checked"
        )
    else:
        errors.append(error_dict(store, kind.kind, info))
