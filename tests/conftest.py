"""Fixtures: Azurite and the emulator run once per session (real processes, free loopback
ports); every test gets a clean slate through `stack`, which resets both, points the
environment at them, and tears down cleanly even when the test fails."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.functions_host import QueueDispatcher, QueueHostSettings
from emulator import AdminClient, EmulatorProcess, use_emulator
from emulator.azurite import Azurite
from rotation import service as service_module
from tests.scenarios import OTHER_VAULT, SUB_A, SUB_B, VAULT
from tests.support.storage import wiper

REPO = Path(__file__).resolve().parent.parent
EMPTY_SCENARIO: dict[str, Any] = {"vaults": {}, "registries": [], "batchAccounts": [], "containerGroups": []}
# the emulator's knobs for every test: fast long-running writes, no Retry-After waits
TEST_CONFIG: dict[str, Any] = {"lroSeconds": 0.05, "retryAfter": 0}


# Under `make test` every pytest-xdist worker starts its own Azurite and emulator at the same
# moment; on a loaded machine that start can outlast the defaults. A failed start fails every
# test of the worker, so these bounds are generous: they only ever end a start that hangs.
START_TIMEOUT = 180


@pytest.fixture(scope="session")
def emulator_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[EmulatorProcess]]:
    """The emulator starting on a thread of its own: Azurite starts meanwhile (each takes 1.5 s
    at low load, ten times that while every worker starts both at once)."""
    process = EmulatorProcess(state_dir=tmp_path_factory.mktemp("emulator"))
    with ThreadPoolExecutor(1, thread_name_prefix="emulator-start") as pool:
        started = pool.submit(process.start, START_TIMEOUT)
        try:
            yield started
        finally:
            started.exception()  # waits for the start to end, whichever way it ends
            process.stop()


@pytest.fixture(scope="session")
def azurite(emulator_start: Future[EmulatorProcess]) -> Iterator[Azurite]:
    # started here, on the session's thread: Azurite ends with the thread that started it
    running = Azurite().start(timeout=START_TIMEOUT)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def emulator(emulator_start: Future[EmulatorProcess]) -> EmulatorProcess:
    return emulator_start.result()


@pytest.fixture(autouse=True)
def no_ambient_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-xdist exports its terminal's COLUMNS to each worker, and the CLI honours COLUMNS (as
    `make demo` sets it): without this, tables would be cut to 80 columns under `make test` only.
    A test that wants a width sets one."""
    monkeypatch.delenv("COLUMNS", raising=False)


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wipe_storage(connection_string: str) -> None:
    """Every queue, table and container of the account deleted (tests/support/storage.py)."""
    wiper(connection_string).wipe()


@dataclass
class Stack:
    admin: AdminClient
    env: dict[str, str]
    storage: str  # Azurite connection string
    monkeypatch: pytest.MonkeyPatch
    repo: Path = REPO

    def load(self, scenario: dict[str, Any]) -> None:
        self.admin.load_scenario(scenario)
        self.admin.clear_calls()

    def set(self, **settings: str) -> None:
        """Change product settings for this test (the next service built sees them)."""
        for name, value in settings.items():
            self.monkeypatch.setenv(name, value)

    def service(self) -> service_module.Service:
        return service_module.service_for_environment()

    def dispatcher(self, function: Any, **overrides: Any) -> QueueDispatcher:
        settings = QueueHostSettings.from_host_json(REPO / "host.json")
        settings = QueueHostSettings(**{**settings.__dict__, "visibility_timeout": 0, **overrides})
        return QueueDispatcher(self.storage, "rotation-requests", function, settings)

    def writes(self, method: str = "PATCH") -> list[dict[str, Any]]:
        return [
            c
            for c in self.admin.calls()["calls"]
            if c["method"] == method
            and c["host"] == "management.azure.com"
            and "operationStatuses" not in c["path"]
        ]


@pytest.fixture
def stack(azurite: Azurite, emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    use_emulator(emulator.env, monkeypatch)  # first: everything below talks through it
    for name in list(os.environ):
        if name.startswith("ROTATION_"):
            monkeypatch.delenv(name)
    admin = emulator.admin
    admin.reset(EMPTY_SCENARIO, TEST_CONFIG)  # nothing to do when the last test's teardown left it so
    wipe_storage(azurite.connection_string)
    service_module.forget_services()
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("ROTATION_ALLOWED_VAULTS", f"{VAULT}.vault.azure.net,{OTHER_VAULT}.vault.azure.net")
    monkeypatch.setenv("ROTATION_SUBSCRIPTIONS", f"{SUB_A},{SUB_B}")
    monkeypatch.setenv("ROTATION_POLL_INTERVAL_SECONDS", "0.05")
    monkeypatch.setenv("ROTATION_RETRY_INITIAL_SECONDS", "0.05")
    monkeypatch.setenv("ROTATION_RETRY_MAX_SECONDS", "0.4")
    monkeypatch.setenv("ROTATION_LEASE_SECONDS", "15")
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    yield Stack(admin, dict(emulator.env), azurite.connection_string, monkeypatch)
    admin.reset(EMPTY_SCENARIO, TEST_CONFIG)  # no fault or throttling left for a test without `stack`
    service_module.forget_services()
