"""One registry on the emulator and the product's ARM client, as the per-call benches
(bench/transport_calls.py, bench/wake_cost.py) measure it: no storage, no run, ARM calls only."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from bench import fanout
from emulator import EmulatorProcess, use_emulator

if TYPE_CHECKING:
    import pycurl

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
def registry_stack(latency_ms: int = 0) -> Iterator[tuple[EmulatorProcess, Arm]]:
    """`registry_arm` with the emulator itself; `latency_ms` on every ARM GET, the client warm
    (its token and connections) when it is handed over."""
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
        if latency_ms:
            emulator.admin.add_fault(method="GET", host="management.azure.com", latencyMs=latency_ms)
            for _ in range(50):
                arm.get(REGISTRY, API_VERSION)
        yield emulator, arm


def bare_handle() -> tuple[pycurl.Curl, list[bytes]]:
    """A libcurl handle for the same GET through the emulator's proxy and CA bundle, and where
    its answer goes: what libcurl and TLS cost without our Python."""
    import pycurl

    handle, parts = pycurl.Curl(), list[bytes]()
    handle.setopt(pycurl.URL, URL)
    handle.setopt(pycurl.PROXY, os.environ.get("HTTPS_PROXY", ""))
    handle.setopt(pycurl.HTTPHEADER, ["Authorization: Bearer x", "Accept: application/json"])
    if bundle := os.environ.get("REQUESTS_CA_BUNDLE"):
        handle.setopt(pycurl.CAINFO, bundle)
    handle.setopt(pycurl.WRITEFUNCTION, parts.append)
    handle.setopt(pycurl.HEADERFUNCTION, parts.append)
    handle.setopt(pycurl.NOSIGNAL, 1)
    return handle, parts


def in_threads(calls: int, threads: int, call: Callable[[], object]) -> tuple[float, float]:
    """(CPU ms per call, wall s): `calls` calls from `threads` threads."""
    cpu, wall = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: call(), range(calls)))
    return (time.process_time() - cpu) / calls * 1000, time.monotonic() - wall


def footer(latency_ms: int, load: float) -> str:
    return (
        f"\nlatency {latency_ms} ms on every ARM GET; load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
