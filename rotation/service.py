"""What every entry door needs, built once from settings: clients, stores and the reconciler."""

from __future__ import annotations

import logging
import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from azure.core.exceptions import HttpResponseError, ResourceExistsError

from rotation.azure.kinds import all_kinds
from rotation.config import Settings, load_settings
from rotation.estate.report import REPORTS_CONTAINER
from rotation.run.reconcile import Reconciler
from rotation.run.shardrun import ShardStores
from rotation.storage.audit import ANCHOR_CONTAINER, AUDIT_TABLE, AuditStore
from rotation.storage.ledger import LEDGER_TABLE, Ledger
from rotation.storage.queue import POISON_QUEUE, REQUESTS_QUEUE
from rotation.storage.runs import RUNS_TABLE, RunStore
from rotation.storage.shardbook import ShardBook

if TYPE_CHECKING:
    from rotation.azure.clients import Clients

log = logging.getLogger("rotation.service")
DEADLETTER_CONTAINER = "eventgrid-deadletters"
POISON_CONTAINER = "rotation-poison"
TABLES = (RUNS_TABLE, AUDIT_TABLE, LEDGER_TABLE)
CONTAINERS = (
    DEADLETTER_CONTAINER,
    POISON_CONTAINER,
    ANCHOR_CONTAINER,
    REPORTS_CONTAINER,
)  # the service's own
QUEUES = (REQUESTS_QUEUE, POISON_QUEUE)


def containers() -> tuple[str, ...]:
    """The service's containers and those the kinds keep pending writes in (`pending_store`),
    so a new kind's store is created without the service naming it."""
    stores = {getattr(k, "pending_store", None) for k in all_kinds()}
    return (*CONTAINERS, *sorted(s for s in stores if s and s not in CONTAINERS))


class Service:
    def __init__(self, settings: Settings, clients: Clients | None = None) -> None:
        self.settings = settings
        self.clients = clients or _clients(settings)
        self._storage_ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Service:
        return cls(load_settings())

    def ensure_storage(self) -> None:
        """Create the queues, tables and containers if missing (infra creates them in Azure;
        with data-plane roles only, a refused create is logged and ignored)."""
        with self._lock:
            if self._storage_ready:
                return
            creators = [
                *(lambda n=n: self.clients.tables().create_table(n) for n in TABLES),
                *(lambda n=n: self.clients.blobs().create_container(n) for n in containers()),
                *(lambda n=n: self.clients.queue(n).create_queue() for n in QUEUES),
            ]
            for create in creators:
                try:
                    create()
                except ResourceExistsError:
                    pass
                except HttpResponseError as exc:
                    if exc.status_code not in (403, 409):
                        raise
                    log.info("storage create refused (%s); assuming infra created it", exc.status_code)
            self._storage_ready = True

    @cached_property
    def audit(self) -> AuditStore:
        return AuditStore(
            self.clients.tables().get_table_client(AUDIT_TABLE),
            self.clients.blobs().get_container_client(ANCHOR_CONTAINER),
        )

    @cached_property
    def runs(self) -> RunStore:
        return RunStore(self.clients.tables().get_table_client(RUNS_TABLE))

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.clients.tables().get_table_client(LEDGER_TABLE), self.settings.lease_seconds)

    @cached_property
    def shards(self) -> ShardStores:
        """Where a large run hands out its shards and where they report (run/shardrun.py)."""
        return ShardStores(self.audit, ShardBook(self.runs.table), self.ledger, self.requests_queue)

    @cached_property
    def reconciler(self) -> Reconciler:
        return Reconciler(
            self.settings,
            self.clients,
            audit=self.audit,
            runs=self.runs,
            ledger=self.ledger,
            shards=self.shards,
        )

    @property
    def requests_queue(self):
        return self.clients.queue(REQUESTS_QUEUE)

    @property
    def poison_queue(self):
        return self.clients.queue(POISON_QUEUE)


_ENV_PREFIXES = ("ROTATION_", "AzureWebJobsStorage", "AZURE_CLIENT_ID")
_services: dict[tuple[tuple[str, str], ...], Service] = {}
_services_lock = threading.Lock()


def service_for_environment(*, ensure_storage: bool = True) -> Service:
    """The Service for the current settings, built on first use and reused after (a change of
    settings, as in tests, builds a new one). Raises ConfigError naming a bad setting. The doors
    pass `ensure_storage=False` and prepare storage inside their time budget."""
    fingerprint = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
    with _services_lock:
        service = _services.get(fingerprint)
        if service is None:
            service = _services[fingerprint] = Service.from_environment()
    if ensure_storage:
        service.ensure_storage()
    return service


def forget_services() -> None:
    """Drop cached services so the next call rebuilds from settings (after storage was reset)."""
    with _services_lock:
        _services.clear()


def _clients(settings: Settings) -> Clients:
    """The SDK clients, imported when a door first needs them: `import function_app` stays light."""
    from rotation.azure.clients import Clients

    return Clients(settings)
