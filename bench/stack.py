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
