"""One registry on the emulator and the product's ARM client, as the per-call benches
(bench/transport_calls.py, bench/wake_cost.py) measure it: no storage, no run, ARM calls only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from bench import fanout
from emulator import EmulatorProcess, use_emulator

if TYPE_CHECKING:
    from rotation.azure.arm import Arm

API_VERSION = "2025-11-01"
REGISTRY = f"/subscriptions/{fanout.SUB_A}/resourceGroups/rg-0/providers/Microsoft.ContainerRegistry/registries/reg0000"
URL = f"https://management.azure.com{REGISTRY}?api-version={API_VERSION}"  # through the emulator's proxy


@contextmanager
def registry_arm() -> Iterator[Arm]:
    """The emulator holding one registry (REGISTRY), and `Clients(settings).arm()` for it."""
    with registry_stack() as (_, arm):
        yield arm


@contextmanager
def registry_stack() -> Iterator[tuple[EmulatorProcess, Arm]]:
    """`registry_arm` with the emulator itself (to add latency faults)."""
    with EmulatorProcess() as emulator:
        use_emulator(emulator.env)
        emulator.admin.load_scenario(fanout.estate(1, [fanout.SUB_A]))
        from rotation.azure.clients import Clients
        from rotation.config import load_settings

        settings = load_settings(
            {
                **os.environ,
                "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
                "ROTATION_SUBSCRIPTIONS": fanout.SUB_A,
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # not used: ARM calls only
            }
        )
        arm = Clients(settings).arm()
        if arm.get(REGISTRY, API_VERSION) is None:
            raise SystemExit(f"the emulator does not show {REGISTRY}")
        yield emulator, arm
