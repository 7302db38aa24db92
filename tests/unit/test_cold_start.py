"""Cold start: importing the function app (what the Functions host does to index the functions)
loads no door, no part of the run, no Azure SDK client library and none of the kinds; each is
imported when a function first needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> set[str]:
    """The rotation and azure modules a fresh interpreter holds after running `code`."""
    probe = (
        f"import json, sys; {code}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('rotation.', 'azure.')))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(json.loads(output.stdout.strip().splitlines()[-1]))


def test_import_function_app_leaves_the_management_sdks_and_kinds_unloaded() -> None:
    loaded = loaded_after("import function_app")
    assert not {m for m in loaded if m.startswith("azure.mgmt")}
    assert not loaded & {
        "rotation.azure.kinds.storage",
        "rotation.azure.kinds.disk_encryption_set",
        "rotation.azure.kinds.sql",
    }


def test_import_function_app_loads_no_door_and_no_sdk_client() -> None:
    loaded = loaded_after("import function_app")
    heavy = {
        m for m in loaded if m.startswith(("rotation.storage", "rotation.azure", "azure.core", "azure.mgmt"))
    }
    assert not heavy, heavy
    doors = {"rotation.doors.api", "rotation.doors.intake", "rotation.doors.worker", "rotation.doors.replay"}
    assert not loaded & (doors | {"rotation.service", "rotation.run.reconcile", "rotation.estate.sweep"})
    assert "rotation.doors.sigterm" in loaded  # the SIGTERM handler is set at import


def test_import_function_app_leaves_the_settings_unread() -> None:
    """The settings (and the id grammar they validate with) load with the first door that reads
    them: at import they cost more than the rest of the app's own modules together."""
    loaded = loaded_after("import function_app")
    assert not loaded & {"rotation.config", "rotation.model.ids"}, loaded


def test_a_run_imports_what_it_needs() -> None:
    loaded = loaded_after("from rotation.azure.kinds import all_kinds; all_kinds()")
    assert {
        "rotation.azure.kinds.storage",
        "rotation.azure.kinds.disk_encryption_set",
        "rotation.azure.kinds.sql",
    } <= loaded


def test_the_cli_starts_without_the_azure_sdk() -> None:
    """`rotation --help` (and every command's parsing) loads click, rich and the id grammar, not
    azure-core, the storage layer or the run: each command imports those when it runs."""
    loaded = loaded_after("import rotation.doors.cli")
    heavy = {m for m in loaded if m.startswith(("azure.", "rotation.storage", "rotation.run.shardrun"))}
    assert not heavy, sorted(heavy)


def test_the_retry_layer_and_a_run_on_threads_leave_the_hub_unloaded() -> None:
    """greenlet and the hub (ROTATION_EXECUTION=hub) load with a run on the hub only: the retry
    layer, the pacer and the run's modules ask rotation/waits.py which hub runs them, and that
    question loads neither."""
    probe = (
        "import json, sys; import rotation.azure.retry, rotation.azure.pacing, rotation.run.apply; "
        "print(json.dumps(sorted(m for m in sys.modules if m in ('greenlet', 'rotation.hub'))))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(output.stdout.strip().splitlines()[-1]) == []
