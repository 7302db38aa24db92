"""The `az` CLI's side of make bench's comparison, measured on the local stack: what an operator
runs, one resource at a time, against the same emulator estate as the product's row.

az is a requests/MSAL program, so the emulator's settings reach it as they reach the product:
HTTPS_PROXY (the emulator answers management.azure.com and the vault), REQUESTS_CA_BUNDLE (its
CA), IDENTITY_ENDPOINT + IDENTITY_HEADER (`az login --identity`, App Service's managed identity).
It runs from its own virtualenv (.venv-az, `make az`) with a private AZURE_CONFIG_DIR, telemetry
off, so nothing touches ~/.azure or leaves the machine.

Timed: `az keyvault key show` (the new version's id), then per registry `az acr encryption
rotate-key` (a GET, then the long-running PATCH, waited for) and per Batch account `az batch
account set --encryption-key-source Microsoft.KeyVault --encryption-key-identifier` (one PATCH).
`az login --identity` is timed apart (once a session). The emulator's state says afterwards which
resources really moved.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator import AdminClient
from emulator.state import arm_parts

REPO = Path(__file__).resolve().parent.parent
AZ = REPO / ".venv-az" / "bin" / "az"
NOT_INSTALLED = "az not installed: run make az"
_KID = ["--query", "key.kid", "--output", "tsv"]
COMMAND_TIMEOUT_S = 300  # one az command; a hung one fails the measure instead of the bench


@dataclass(frozen=True)
class AzRun:
    wall: float  # key show + every rotation command, one after the other
    cpu: float  # az's own CPU (user + system) in that time: what load cannot take away
    login: float  # `az login --identity`, apart
    commands: int  # rotation commands run (one a resource)
    moved: int  # resources on the new version afterwards, per the emulator
    resources: int


def installed(az: Path = AZ) -> bool:
    return az.is_file() and os.access(az, os.X_OK)


def rotation_commands(state: dict[str, Any], new_key: str) -> list[list[str]]:
    """One az command a resource: registries, then Batch accounts, as an operator types them.
    `rotate-key` without --identity keeps the registry's encryption identity (as the product does)."""
    commands = []
    for registry in state["registries"]:
        where = _where(registry["id"])
        commands.append(["acr", "encryption", "rotate-key", *where, "--key-encryption-key", new_key])
    for account in state["batchAccounts"]:
        commands.append(
            [
                "batch",
                "account",
                "set",
                *_where(account["id"]),
                "--encryption-key-source",
                "Microsoft.KeyVault",
                "--encryption-key-identifier",
                new_key,
            ]
        )
    return [[*c, "--output", "none"] for c in commands]


def _where(resource_id: str) -> list[str]:
    parts = arm_parts(resource_id)
    return [
        "--name",
        parts["name"],
        "--resource-group",
        parts["rg"],
        "--subscription",
        parts["sub"],
    ]


def moved(state: dict[str, Any], new_key: str) -> int:
    """Registries and Batch accounts whose key is `new_key` now."""
    resources = [*state["registries"], *state["batchAccounts"]]
    return sum(1 for r in resources if (r.get("keyId") or "").rstrip("/") == new_key)


def az_environment(emulator_env: dict[str, str], config_dir: Path) -> dict[str, str]:
    """This process's environment, the emulator's settings, and az's own: a private config dir,
    no telemetry (its upload would go out through the proxy), errors only, no colour."""
    return {
        **os.environ,
        **emulator_env,
        "AZURE_CONFIG_DIR": str(config_dir),
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_SURVEY_MESSAGE": "false",
    }


class AzSession:
    """az commands in one private config dir (one login, as one operator's shell)."""

    def __init__(self, env: dict[str, str], az: Path = AZ) -> None:
        self.env, self.az = env, az

    def run(self, args: list[str]) -> str:
        done = subprocess.run(
            [str(self.az), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"az {' '.join(args[:3])} exited {done.returncode}: {done.stderr.strip()[-600:]}"
            )
        return done.stdout.strip()


@contextmanager
def session(emulator_env: dict[str, str], az: Path = AZ) -> Iterator[AzSession]:
    local = ("http://127.0.0.1:", "http://localhost:")
    if not all(emulator_env.get(k, "").startswith(local) for k in ("HTTPS_PROXY", "IDENTITY_ENDPOINT")):
        # without them az would sign in through the VM metadata endpoint and call Azure itself
        raise ValueError(
            "az runs only against the local emulator: HTTPS_PROXY and IDENTITY_ENDPOINT on loopback"
        )
    with tempfile.TemporaryDirectory(prefix="az-config-") as config_dir:
        yield AzSession(az_environment(emulator_env, Path(config_dir)), az)


def measure(admin: AdminClient, emulator_env: dict[str, str], vault: str, key: str, new_key: str) -> AzRun:
    """Rotate the loaded estate to the key's current version with az, one resource at a time."""
    commands = rotation_commands(admin.state(), new_key)
    with session(emulator_env) as az:
        started = time.monotonic()
        az.run(["login", "--identity", "--output", "none"])
        login = time.monotonic() - started
        started, cpu = time.monotonic(), _children_cpu()
        kid = az.run(["keyvault", "key", "show", "--vault-name", vault, "--name", key, *_KID])
        if kid != new_key:
            raise RuntimeError(f"az keyvault key show named {kid}, not the current version {new_key}")
        for command in commands:
            az.run(command)
        wall, cpu = time.monotonic() - started, _children_cpu() - cpu
    state = admin.state()
    total = len(state["registries"]) + len(state["batchAccounts"])
    return AzRun(wall, cpu, login, len(commands), moved(state, new_key), total)


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (each az command, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
