"""The local stack a benchmark runs against: Azurite and the emulator, the product's settings
pointed at them (the run's time budget from the environment, an hour unless set)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from emulator import EmulatorProcess, use_emulator
from emulator.azurite import Azurite


@contextmanager
def local_stack(**settings: str) -> Iterator[EmulatorProcess]:
    with Azurite() as azurite, EmulatorProcess() as emulator:
        use_emulator(emulator.env)
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "ROTATION_ALLOWED_VAULTS": "contoso-cmk.vault.azure.net",
                "ROTATION_TIME_BUDGET_SECONDS": os.environ.get("ROTATION_TIME_BUDGET_SECONDS", "3600"),
                **settings,
            }
        )
        yield emulator


def fresh_records() -> None:
    """Forget every earlier run (Azurite's tables, queues and blobs). A bench resets the emulator
    to the same resource ids and key versions each run; the product, remembering what it wrote
    there, would rightly report every consumer the reset put back as `consumer-reverted` (and read
    the activity log for each) in the next run."""
    from rotation.config import load_settings
    from tests.conftest import wipe_storage

    wipe_storage(str(load_settings().storage.connection_string))
