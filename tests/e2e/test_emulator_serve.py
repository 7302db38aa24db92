"""`python -m emulator serve` as a developer runs it: the printed endpoints and export block, the
env file, a KeyClient using exactly those settings, a clean stop on SIGTERM and SIGINT, and
exit code 2 for a bad scenario file."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

from emulator import read_env_file, use_emulator

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "emulator" / "scenarios" / "sample.json"
ENV_KEYS = (
    "HTTPS_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "EMULATOR_ADMIN_URL",
)


class Served:
    def __init__(self, workdir: Path, scenario: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.env_file = workdir / "emulator.env"
        self.stdout_file = workdir / "stdout.txt"
        self.stderr_file = workdir / "stderr.txt"
        clean = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
        with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "emulator",
                    "serve",
                    "--scenario",
                    str(scenario),
                    "--env-file",
                    str(self.env_file),
                    "--state-dir",
                    str(workdir / "state"),
                ],
                cwd=REPO,
                env=clean,
                stdout=out,
                stderr=err,
            )

    def wait_ready(self, timeout: float = 30) -> str:
        """The process's output once it has printed everything it prints at start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.stdout_file.read_text()
            if self.env_file.exists() and "# the same settings are in" in output:
                return output
            if self.process.poll() is not None:
                raise AssertionError(
                    f"serve exited {self.process.returncode}: {self.stderr_file.read_text()}"
                )
            time.sleep(0.05)  # a real process (python -m emulator serve) getting ready: only time tells
        raise AssertionError(f"serve did not get ready; stdout so far:\n{self.stdout_file.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    """Two emulators started together: one to stop with SIGTERM, one with SIGINT."""
    pair = (Served(tmp_path / "term", SAMPLE), Served(tmp_path / "int", SAMPLE))
    yield pair
    for one in pair:
        one.stop()


def exports(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            found[key] = shlex.split(value)[0]
    return found


def test_serve_prints_settings_that_work_and_stops_on_signals(
    served: tuple[Served, Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    by_term, by_int = served
    output = by_term.wait_ready()
    by_int.wait_ready()

    assert "emulator listening on 127.0.0.1:" in output
    for label in ("Key Vault :", "ARM       :", "identity  :", "admin     :"):
        assert label in output
    assert "(1 vaults)" in output
    assert "(7 registries, 3 Batch accounts, 2 container groups)" in output
    printed = exports(output)
    assert list(printed)[: len(ENV_KEYS)] == list(ENV_KEYS)  # the settings the issue names, in order
    assert set(printed) - set(ENV_KEYS) == {"https_proxy", "no_proxy"}  # requests prefers lower case
    env = read_env_file(by_term.env_file)
    assert env == printed
    assert by_term.env_file.read_text().splitlines() == [f"{k}={v}" for k, v in env.items()]
    port = output.split("emulator listening on 127.0.0.1:")[1].split()[0]
    assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{port}"
    assert env["EMULATOR_ADMIN_URL"] == f"http://127.0.0.1:{port}"
    assert env["IDENTITY_ENDPOINT"].startswith(f"http://127.0.0.1:{port}/")
    assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] and Path(env["SSL_CERT_FILE"]).is_file()
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    assert read_env_file(by_int.env_file)["HTTPS_PROXY"] != env["HTTPS_PROXY"]

    use_emulator(env, monkeypatch)
    credential = DefaultAzureCredential()
    latest = KeyClient("https://contoso-cmk.vault.azure.net", credential).get_key("acr-cmk")
    assert latest.properties.version == "9b1e4c0d2f8a4e6b8c7d5a3f1e2d4c6b"
    # JsonWebKey sets its fields with setattr: read from its __dict__
    assert len(vars(latest.key)["n"]) == 3072 // 8
    registry = ContainerRegistryManagementClient(
        credential, "00000000-0000-0000-0000-000000000001"
    ).registries.get("rg-build", "contosobuild")
    assert registry.encryption.key_vault_properties.key_identifier.endswith(
        "/0a1b2c3d4e5f40718293a4b5c6d7e8f9"
    )

    for one, signum in ((by_term, signal.SIGTERM), (by_int, signal.SIGINT)):
        one.process.send_signal(signum)
    for one in (by_term, by_int):
        assert one.process.wait(timeout=5) == 0
        assert one.stdout_file.read_text().rstrip().endswith("emulator stopped")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            json.dumps({"vaults": {"contoso-cmk": {"keys": {"k": {"kty": "AES", "versions": [{}]}}}}}),
            "invalid scenario",
        ),
        ("{not json", "cannot read scenario"),
    ],
    ids=["bad-field", "not-json"],
)
def test_invalid_scenario_file_exits_2_with_a_message(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    env_file = tmp_path / "emulator.env"
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--scenario", str(bad), "--env-file", str(env_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert str(bad) in done.stderr
    if message == "invalid scenario":
        assert "vaults['contoso-cmk'].keys['k'].kty" in done.stderr
    assert not env_file.exists()
    assert done.stdout == ""
