"""bench/azcli.py: the az commands an operator would type for the estate, which resources the
emulator's state shows moved, and az's environment (private config dir, telemetry off, the
emulator's proxy). A stand-in `az` script answers, so az need not be installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import azcli

SUB = "00000000-0000-0000-0000-00000000000a"
OLD = "https://contoso-cmk.vault.azure.net/keys/acr-cmk/" + "1" * 32
NEW = "https://contoso-cmk.vault.azure.net/keys/acr-cmk/" + "2" * 32


def state(registry_key: str = OLD, batch_key: str | None = OLD) -> dict:
    return {
        "registries": [
            {
                "id": f"/subscriptions/{SUB}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/reg000",
                "keyId": registry_key,
            }
        ],
        "batchAccounts": [
            {
                "id": f"/subscriptions/{SUB}/resourceGroups/rg-batch/providers/Microsoft.Batch/batchAccounts/batch000",
                "keyId": batch_key,
            }
        ],
    }


def test_one_command_a_resource_as_an_operator_types_it() -> None:
    where = ["--subscription", SUB, "--output", "none"]
    assert azcli.rotation_commands(state(), NEW) == [
        ["acr", "encryption", "rotate-key", "--name", "reg000", "--resource-group", "rg-acr", *where[:2],
         "--key-encryption-key", NEW, *where[2:]],
        ["batch", "account", "set", "--name", "batch000", "--resource-group", "rg-batch", *where[:2],
         "--encryption-key-source", "Microsoft.KeyVault", "--encryption-key-identifier", NEW, *where[2:]],
    ]  # fmt: skip


def test_moved_counts_what_is_on_the_new_version() -> None:
    assert azcli.moved(state(), NEW) == 0
    assert azcli.moved(state(registry_key=NEW + "/"), NEW) == 1
    assert azcli.moved(state(registry_key=NEW, batch_key=NEW), NEW) == 2
    assert azcli.moved(state(registry_key=NEW, batch_key=None), NEW) == 1


def test_az_runs_in_a_private_config_dir_with_telemetry_off(tmp_path: Path) -> None:
    env = azcli.az_environment({"HTTPS_PROXY": "http://127.0.0.1:1"}, tmp_path)
    assert env["AZURE_CONFIG_DIR"] == str(tmp_path)
    assert env["AZURE_CORE_COLLECT_TELEMETRY"] == "false"
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:1"
    assert env["PATH"] == os.environ["PATH"]


LOCAL = {"HTTPS_PROXY": "http://127.0.0.1:1", "IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token"}


def stand_in(tmp_path: Path, body: str) -> Path:
    az = tmp_path / "az"
    az.write_text("#!/bin/sh\n" + body)
    az.chmod(0o755)
    return az


def test_a_session_answers_what_az_printed_and_fails_on_its_errors(tmp_path: Path) -> None:
    az = stand_in(
        tmp_path, 'echo "$AZURE_CONFIG_DIR $*"; [ "$1" = ok ] || { echo "ERROR: no" >&2; exit 3; }\n'
    )
    assert azcli.installed(az) and not azcli.installed(tmp_path / "missing")
    with azcli.session(LOCAL, az) as session:
        config_dir, said = session.run(["ok", "now"]).split(" ", 1)
        assert said == "ok now" and Path(config_dir).is_dir()
        with pytest.raises(RuntimeError, match="exited 3: ERROR: no"):
            session.run(["bad"])
    assert not Path(config_dir).exists()  # the private config dir goes with the session


def test_az_never_runs_without_the_emulators_settings(tmp_path: Path) -> None:
    az = stand_in(tmp_path, "exit 0\n")
    for env in ({}, {**LOCAL, "IDENTITY_ENDPOINT": ""}, {**LOCAL, "HTTPS_PROXY": "http://proxy.corp:8080"}):
        with pytest.raises(ValueError, match="only against the local emulator"), azcli.session(env, az):
            pass


def test_without_az_the_row_says_so_and_stays_estimated(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import targets

    monkeypatch.setattr(azcli, "installed", lambda: False)
    said, counts = targets.az_side(None, targets.az_estate(3, 1), 50, 2.0)  # type: ignore[arg-type]
    assert (
        said
        == "az not installed: run make az; az ESTIMATED 9 s (2.3 s each, issue 27's measurement): 5x faster"
    )
    assert counts  # nothing was run that could have failed to move
