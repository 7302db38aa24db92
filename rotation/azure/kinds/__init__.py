"""Consumers of a key, one module per resource kind behind one protocol
(rotation/azure/kinds/protocol.py, re-exported here for the rooms above).

`all_kinds()` is the one list of kinds: adding a kind is one module and one line there.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from rotation.azure.kinds.protocol import (
    BUSY_STATES,
    FAILED_STATES,
    KEY_ID,
    KEY_PARTS,
    ApplyContext,
    KindDefaults,
    TargetKind,
    checks_of,
    forbids_key_expiry,
    has_failed,
    hints_of,
    is_busy,
    pending,
    read_for_key,
    recreates_missing,
    retire_grace,
    unhealthy,
    verified,
)
from rotation.model.consumer import Consumer
from rotation.model.ids import ResourceId, parse_resource_id

if TYPE_CHECKING:
    from rotation.config import Settings

__all__ = [
    "BUSY_STATES",
    "FAILED_STATES",
    "KEY_ID",
    "KEY_PARTS",
    "ApplyContext",
    "Consumer",
    "KindDefaults",
    "TargetKind",
    "accepted_types",
    "all_kinds",
    "checks_of",
    "forbids_key_expiry",
    "has_failed",
    "hints_of",
    "is_busy",
    "kind_label",
    "parse_target",
    "pending",
    "read_for_key",
    "recreates_missing",
    "retire_grace",
    "unhealthy",
    "verified",
]


def all_kinds(settings: Settings | None = None) -> list[TargetKind]:
    """The one list of consumer kinds: adding a kind is one module and one line here. A kind's
    own setting comes from `settings` (its default without them: lists and reads need none)."""
    from rotation.azure.kinds.aks import ManagedClusters
    from rotation.azure.kinds.appconfiguration import ConfigurationStores
    from rotation.azure.kinds.batch import BatchAccounts
    from rotation.azure.kinds.containergroup import ContainerGroups
    from rotation.azure.kinds.cosmos import CosmosAccounts
    from rotation.azure.kinds.databricks import DatabricksWorkspaces
    from rotation.azure.kinds.datafactory import DataFactories
    from rotation.azure.kinds.disk_encryption_set import DiskEncryptionSets
    from rotation.azure.kinds.flexible_servers import MySqlFlexibleServers, PostgresFlexibleServers
    from rotation.azure.kinds.hdinsight import HDInsightClusters
    from rotation.azure.kinds.kusto import KustoClusters
    from rotation.azure.kinds.log_analytics import LogAnalyticsClusters
    from rotation.azure.kinds.messaging import EventHubNamespaces, ServiceBusNamespaces
    from rotation.azure.kinds.registry import Registries
    from rotation.azure.kinds.sql import SqlServers
    from rotation.azure.kinds.storage import StorageAccounts
    from rotation.azure.kinds.synapse import SynapseWorkspaces

    return [
        Registries(),
        BatchAccounts(),
        ContainerGroups(settings.container_group_policy if settings else "report"),
        StorageAccounts(),
        DiskEncryptionSets(),
        SqlServers(),
        LogAnalyticsClusters(),
        KustoClusters(),
        EventHubNamespaces(),
        ServiceBusNamespaces(),
        CosmosAccounts(),
        ManagedClusters(),
        DataFactories(),
        DatabricksWorkspaces(),
        ConfigurationStores(),
        HDInsightClusters(),
        SynapseWorkspaces(),
        PostgresFlexibleServers(),
        MySqlFlexibleServers(),
    ]


@functools.cache
def accepted_types() -> tuple[str, ...]:
    """The ARM types a target may have: one per registered kind, nothing else."""
    return tuple(k.resource_type for k in all_kinds())


def parse_target(text: str) -> ResourceId:
    """A target named at a door (CLI, HTTP, queue): an ARM id's shape, of a registered kind's
    type. Raises InvalidId naming the accepted types."""
    return parse_resource_id(text, accepted_types())


@functools.cache
def _kinds_by_type() -> dict[str, str]:
    return {k.resource_type.lower(): k.kind for k in all_kinds()}


@functools.cache
def write_actions() -> frozenset[str]:
    """The ARM actions (`.../action`) kinds write keys with, lower case: the activity log names
    such a write by its action, not `/write` (HDInsight's `rotatediskencryptionkey`)."""
    return frozenset(a.lower() for k in all_kinds() for a in k.arm_actions if a.lower().endswith("/action"))


def kind_label(resource_id: str) -> str:
    """`<kind> <name>` for people (`servicebus contoso-orders`): names repeat across kinds.
    An id of no known kind keeps its ARM type: `Microsoft.X/things/name`."""
    parts = resource_id.strip("/").split("/")
    if len(parts) < 8 or parts[4].lower() != "providers":
        return parts[-1]
    kind = _kinds_by_type().get(f"{parts[5]}/{parts[6]}".lower())
    return f"{kind} {parts[-1]}" if kind else f"{parts[5]}/{parts[6]}/{parts[-1]}"
