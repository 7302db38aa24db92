"""Settings from the environment (app settings in Azure), validated once at start.

Every error names the setting and what a valid value looks like, so a misconfigured
deployment fails at its first invocation with a message an operator can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from rotation.model.errors import RotationError
from rotation.model.ids import GUID, HOST_NAME

_VAULT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,22}[a-z0-9]\Z")
_TAG_NAME = re.compile(r"^[^<>%&\\?/]{1,512}\Z")
_NCRONTAB = re.compile(r"^\S+(\s+\S+){5}\Z")


class ConfigError(RotationError, ValueError):
    """A setting is missing or invalid; the message starts with the setting's name."""


# Targets a process updates at once, however many subscriptions' lanes share them. A target
# mostly waits on ARM (about a second of write and polls) for about 5 ms of CPU, and one Python
# process computes on one core at a time: ~200 targets a second, so ~250 in flight keep that core
# busy. Fewer leave it idle (128: 73.5 s for bench-10k against 55.3 s at 256, same machine).
MAX_PARALLEL_TARGETS = 256
# On the hub (ROTATION_EXECUTION=hub) a target in flight is a greenlet, not a thread: one waiting
# out a long-running write costs no CPU and about 0.1 MB, so a process keeps 1,024 going (a mixed
# estate whose writes take 5 s ran in 0.58-0.64x the wall it took at 256; docs/performance.md).
# Their transfers still share at most MAX_PARALLEL_TARGETS connections (rotation/hub.py): the
# Functions Consumption plan allows an instance 600 active outbound connections.
MAX_PARALLEL_TARGETS_ON_HUB = 1024


def parallel_targets(execution: str) -> int:
    """The process's cap on targets in flight for an execution mode (Settings.execution)."""
    return MAX_PARALLEL_TARGETS_ON_HUB if execution == "hub" else MAX_PARALLEL_TARGETS


@dataclass(frozen=True)
class Cloud:
    name: str
    arm_endpoint: str  # https://management.azure.com
    vault_suffix: str | None  # vault.azure.net; None for a custom cloud (any host allowed by configuration)
    hsm_suffix: str | None = None  # managedhsm.azure.net: Managed HSM pools serve the same keys API

    @property
    def key_host_suffixes(self) -> tuple[str, ...]:
        return tuple(s for s in (self.vault_suffix, self.hsm_suffix) if s)

    @property
    def arm_scope(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/.default"


CLOUDS = {
    "AzurePublicCloud": Cloud(
        "AzurePublicCloud", "https://management.azure.com", "vault.azure.net", "managedhsm.azure.net"
    ),
    "AzureChinaCloud": Cloud(
        "AzureChinaCloud", "https://management.chinacloudapi.cn", "vault.azure.cn", "managedhsm.azure.cn"
    ),
    "AzureUSGovernment": Cloud(
        "AzureUSGovernment",
        "https://management.usgovcloudapi.net",
        "vault.usgovcloudapi.net",
        "managedhsm.usgovcloudapi.net",
    ),
}


@dataclass(frozen=True)
class StorageSettings:
    """`AzureWebJobsStorage` as a connection string, or its identity-based form."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    blob_service_uri: str | None = None
    credential: str | None = None  # "managedidentity" or None (DefaultAzureCredential)
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    allowed_vaults: frozenset[str]
    subscriptions: tuple[str, ...]
    cloud: Cloud
    concurrency: int  # a lane's starting width, and the workers of listing pools
    time_budget_seconds: float
    container_group_policy: Literal["report", "redeploy"]
    opt_out_tag: str
    new_version_expiry_days: int
    expiry_window_days: int
    sweep_schedule: str
    defer_to_key_policy: bool
    outcome_topic_endpoint: str | None
    storage: StorageSettings
    client_id: str | None
    # The longest single Retry-After honoured, and the largest answer read from Key Vault or ARM.
    max_retry_after_seconds: float = 60.0
    max_response_bytes: int = 32 * 1024 * 1024
    # Tuning (not in DESIGN.md section 7; defaults suit Azure, tests shorten them).
    poll_interval_seconds: float = 5.0
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    retry_attempts: int = 6
    lease_seconds: int = 60
    # The longest a request that found the key's lease held waits before it checks again (the
    # holder's lease expiry when sooner), plus 1-5 s of jitter; at most 3600, the longest lease.
    lease_wait_seconds: int = 3600
    # How much later an interrupted run's request comes back on the queue for the rest (another
    # instance takes it when this one is stopping).
    resume_after_seconds: int = 10
    # Total time a door may take (rotation/azure/budget.py): under Event Grid's 30 s for the
    # event and HTTP doors, under host.json's functionTimeout (30 min) for the queue worker.
    door_budget_seconds: float = 20.0
    worker_budget_seconds: float = 1740.0
    # Canary waves and the rotation-age report (issue 13).
    wave_soak_minutes: int = 0
    wave_recheck_seconds: int = 300  # tuning: how often a soak re-checks the earlier waves
    report_max_age_days: int = 365  # the sweep's daily report in `rotation-reports`
    # `versions disable` refuses a version a consumer was reverted to this recently (run/reverts.py).
    revert_guard_days: int = 30
    # ROTATION_CONCURRENCY=auto: each subscription's lane widens to ARM's remaining budget.
    lanes_follow_arm: bool = True
    # arm: a list per kind and subscription; resourcegraph: one query across subscriptions;
    # auto: Resource Graph from discovery.GRAPH_FROM_SUBSCRIPTIONS subscriptions on
    discovery: str = "auto"
    # hub: the targets as greenlets on one thread that drives every transfer (rotation/hub.py);
    # threads: a thread per target in flight (0.70-0.77x the CPU a target on the hub)
    execution: str = "hub"
    # A run with more `update` steps than this is split into shard requests on the queue
    # (run/sharding.py); the default is the measured choice in docs/scaling.md.
    shard_threshold: int = 2000

    def vault_allowed(self, host: str) -> bool:
        return host.lower() in self.allowed_vaults


DISCOVERY_MODES = ("arm", "resourcegraph", "auto")
EXECUTION_MODES = ("threads", "hub")


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _number(
    env: Mapping[str, str], name: str, default: float, low: float, high: float, kind: type = float
) -> Any:
    text = _get(env, name)
    if text is None:
        return default
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name}: expected {what} between {low} and {high}, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: expected {what} between {low} and {high}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return _number(env, name, default, low, high, int)


# A lane's starting width under ROTATION_CONCURRENCY=auto, before ARM reports the budget.
AUTO_CONCURRENCY_START = 16


def _concurrency(env: Mapping[str, str]) -> tuple[int, bool]:
    """ROTATION_CONCURRENCY: `auto` (lanes follow ARM's budget, starting at 16) or a fixed width."""
    text = _get(env, "ROTATION_CONCURRENCY")
    if text is None or text.strip().lower() == "auto":
        return AUTO_CONCURRENCY_START, True
    if not text.strip().isdigit():
        raise ConfigError(
            f"ROTATION_CONCURRENCY: expected auto or a whole number between 1 and 256, got {text!r}"
        )
    return _int(env, "ROTATION_CONCURRENCY", AUTO_CONCURRENCY_START, 1, 256), False


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = _get(env, name)
    if text is None:
        return default
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {text!r}")


def _https_url(name: str, text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise ConfigError(f"{name}: expected an https URL without credentials, got {text!r}")
    return text.rstrip("/")


def _cloud(env: Mapping[str, str]) -> Cloud:
    name = _get(env, "ROTATION_CLOUD") or "AzurePublicCloud"
    if name == "Custom":
        endpoint = _get(env, "ROTATION_ARM_ENDPOINT")
        if not endpoint:
            raise ConfigError(
                "ROTATION_ARM_ENDPOINT: required when ROTATION_CLOUD=Custom (e.g. "
                "https://management.contoso-stack.local)"
            )
        return Cloud("Custom", _https_url("ROTATION_ARM_ENDPOINT", endpoint), None)
    if name not in CLOUDS:
        raise ConfigError(f"ROTATION_CLOUD: one of {', '.join([*CLOUDS, 'Custom'])}, got {name!r}")
    if _get(env, "ROTATION_ARM_ENDPOINT"):
        raise ConfigError(
            "ROTATION_ARM_ENDPOINT: only used with ROTATION_CLOUD=Custom; remove it or set "
            "ROTATION_CLOUD=Custom"
        )
    return CLOUDS[name]


def _allowed_vaults(env: Mapping[str, str], cloud: Cloud) -> frozenset[str]:
    text = _get(env, "ROTATION_ALLOWED_VAULTS")
    if not text:
        raise ConfigError(
            "ROTATION_ALLOWED_VAULTS: required; comma-separated vault and Managed HSM hosts such as "
            "contoso-cmk.vault.azure.net,contoso-hsm.managedhsm.azure.net"
        )
    hosts = set()
    for item in text.split(","):
        host = item.strip().lower()
        if not host:
            continue
        name, _, suffix = host.partition(".")
        if cloud.vault_suffix is not None:
            # Vault and Managed HSM names share one rule: 3-24 letters, digits and dashes.
            if suffix not in cloud.key_host_suffixes or not _VAULT_NAME.match(name):
                raise ConfigError(
                    f"ROTATION_ALLOWED_VAULTS: {item.strip()!r} is not a vault or Managed HSM host of "
                    f"{cloud.name} (expected <vault-name>.{cloud.vault_suffix} or "
                    f"<hsm-name>.{cloud.hsm_suffix})"
                )
        elif not HOST_NAME.match(host):
            raise ConfigError(f"ROTATION_ALLOWED_VAULTS: {item.strip()!r} is not a hostname")
        hosts.add(host)
    if not hosts:
        raise ConfigError("ROTATION_ALLOWED_VAULTS: no vault hosts given")
    return frozenset(hosts)


def _subscriptions(env: Mapping[str, str]) -> tuple[str, ...]:
    text = _get(env, "ROTATION_SUBSCRIPTIONS")
    if not text:
        raise ConfigError("ROTATION_SUBSCRIPTIONS: required; comma-separated subscription ids (GUIDs)")
    subscriptions = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if not GUID.match(item):
            raise ConfigError(f"ROTATION_SUBSCRIPTIONS: {item!r} is not a subscription id (a GUID)")
        if item.lower() not in subscriptions:
            subscriptions.append(item.lower())
    if not subscriptions:
        raise ConfigError("ROTATION_SUBSCRIPTIONS: no subscription ids given")
    return tuple(subscriptions)


def _storage(env: Mapping[str, str]) -> StorageSettings:
    connection = _get(env, "AzureWebJobsStorage")
    if connection:
        if "=" not in connection and connection != "UseDevelopmentStorage=true":
            raise ConfigError("AzureWebJobsStorage: expected a storage connection string")
        return StorageSettings(connection_string=connection)
    uris = {part: _get(env, f"AzureWebJobsStorage__{part}ServiceUri") for part in ("queue", "table", "blob")}
    account = _get(env, "AzureWebJobsStorage__accountName")
    if account and not any(uris.values()):
        uris = {part: f"https://{account}.{part}.core.windows.net" for part in uris}
    missing = [f"AzureWebJobsStorage__{part}ServiceUri" for part, uri in uris.items() if not uri]
    if len(missing) == 3:
        raise ConfigError(
            "AzureWebJobsStorage: required; a connection string, or the identity-based "
            "AzureWebJobsStorage__queueServiceUri/__tableServiceUri/__blobServiceUri settings"
        )
    if missing:
        raise ConfigError(f"{missing[0]}: required with the identity-based AzureWebJobsStorage settings")
    for part, uri in uris.items():
        _https_url(f"AzureWebJobsStorage__{part}ServiceUri", uri or "")  # none missing: checked above
    credential = _get(env, "AzureWebJobsStorage__credential")
    if credential and credential.lower() != "managedidentity":
        raise ConfigError("AzureWebJobsStorage__credential: only 'managedidentity' is supported")
    client_id = _get(env, "AzureWebJobsStorage__clientId")
    if client_id and not GUID.match(client_id):
        raise ConfigError("AzureWebJobsStorage__clientId: expected a GUID")
    return StorageSettings(
        queue_service_uri=uris["queue"],
        table_service_uri=uris["table"],
        blob_service_uri=uris["blob"],
        credential=credential,
        client_id=client_id,
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    cloud = _cloud(env)
    policy = (_get(env, "ROTATION_CONTAINER_GROUP_POLICY") or "report").lower()
    if policy not in ("report", "redeploy"):
        raise ConfigError(f"ROTATION_CONTAINER_GROUP_POLICY: report or redeploy, got {policy!r}")
    tag = _get(env, "ROTATION_OPT_OUT_TAG") or "cmk-rotation"
    if not _TAG_NAME.match(tag):
        raise ConfigError(f"ROTATION_OPT_OUT_TAG: {tag!r} is not a valid tag name")
    schedule = _get(env, "ROTATION_SWEEP_SCHEDULE") or "0 0 * * * *"
    if not _NCRONTAB.match(schedule):
        raise ConfigError(
            f"ROTATION_SWEEP_SCHEDULE: expected a six-field NCRONTAB such as '0 0 * * * *', got {schedule!r}"
        )
    topic = _get(env, "ROTATION_OUTCOME_TOPIC_ENDPOINT")
    client_id = _get(env, "AZURE_CLIENT_ID")
    if client_id and not GUID.match(client_id):
        raise ConfigError(
            f"AZURE_CLIENT_ID: expected the managed identity's client id (a GUID), got {client_id!r}"
        )
    execution = (_get(env, "ROTATION_EXECUTION") or "hub").lower()
    if execution not in EXECUTION_MODES:
        raise ConfigError(f"ROTATION_EXECUTION: one of {', '.join(EXECUTION_MODES)}, got {execution!r}")
    discovery = (_get(env, "ROTATION_DISCOVERY") or "auto").lower()
    if discovery not in DISCOVERY_MODES:
        raise ConfigError(f"ROTATION_DISCOVERY: one of {', '.join(DISCOVERY_MODES)}, got {discovery!r}")
    return Settings(
        allowed_vaults=_allowed_vaults(env, cloud),
        subscriptions=_subscriptions(env),
        cloud=cloud,
        concurrency=_concurrency(env)[0],
        lanes_follow_arm=_concurrency(env)[1],
        time_budget_seconds=_float(env, "ROTATION_TIME_BUDGET_SECONDS", 600, 5, 86400),
        container_group_policy=policy,  # type: ignore[arg-type]
        opt_out_tag=tag,
        new_version_expiry_days=_int(env, "ROTATION_NEW_VERSION_EXPIRY_DAYS", 365, 28, 3650),
        expiry_window_days=_int(env, "ROTATION_EXPIRY_WINDOW_DAYS", 30, 1, 365),
        sweep_schedule=schedule,
        defer_to_key_policy=_bool(env, "ROTATION_DEFER_TO_KEY_POLICY", True),
        outcome_topic_endpoint=_https_url("ROTATION_OUTCOME_TOPIC_ENDPOINT", topic) if topic else None,
        storage=_storage(env),
        client_id=client_id,
        max_retry_after_seconds=_float(env, "ROTATION_MAX_RETRY_AFTER_SECONDS", 60.0, 0.0, 3600),
        max_response_bytes=_int(env, "ROTATION_MAX_RESPONSE_BYTES", 32 * 1024 * 1024, 65536, 1024**3),
        poll_interval_seconds=_float(env, "ROTATION_POLL_INTERVAL_SECONDS", 5.0, 0.01, 60),
        retry_initial_seconds=_float(env, "ROTATION_RETRY_INITIAL_SECONDS", 1.0, 0.0, 60),
        retry_max_seconds=_float(env, "ROTATION_RETRY_MAX_SECONDS", 30.0, 0.0, 600),
        retry_attempts=_int(env, "ROTATION_RETRY_ATTEMPTS", 6, 1, 20),
        lease_seconds=_int(env, "ROTATION_LEASE_SECONDS", 60, 5, 3600),
        lease_wait_seconds=_int(env, "ROTATION_LEASE_WAIT_SECONDS", 3600, 0, 3600),
        resume_after_seconds=_int(env, "ROTATION_RESUME_AFTER_SECONDS", 10, 0, 3600),
        door_budget_seconds=_float(env, "ROTATION_DOOR_BUDGET_SECONDS", 20.0, 0.5, 25),
        worker_budget_seconds=_float(env, "ROTATION_WORKER_BUDGET_SECONDS", 1740.0, 1, 86400),
        # At most 7 days: the queue hides a message for no longer than that.
        wave_soak_minutes=_int(env, "ROTATION_WAVE_SOAK_MINUTES", 0, 0, 10080),
        wave_recheck_seconds=_int(env, "ROTATION_WAVE_RECHECK_SECONDS", 300, 1, 3600),
        report_max_age_days=_int(env, "ROTATION_REPORT_MAX_AGE_DAYS", 365, 1, 3650),
        discovery=discovery,
        execution=execution,
        revert_guard_days=_int(env, "ROTATION_REVERT_GUARD_DAYS", 30, 0, 3650),
        shard_threshold=_int(env, "ROTATION_SHARD_THRESHOLD", 2000, 1, 1_000_000),
    )
