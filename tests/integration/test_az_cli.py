"""The real `az` CLI (from .venv-az: `make az`) against the emulator, as make bench drives it
(bench/azcli.py): `az login --identity`, `az keyvault key show`, `az acr encryption rotate-key`
and `az batch account set` move a registry and a Batch account to the key's new version. About a
minute on two busy cores (az starts in seconds); skipped where az is not installed: the suite never
depends on it."""

from __future__ import annotations

import pytest

from bench import azcli
from tests.conftest import Stack
from tests.scenarios import VAULT, batch, key, key_id, registry, scenario, version, vid

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not azcli.installed(), reason=azcli.NOT_INSTALLED),
]


def test_az_moves_a_registry_and_a_batch_account(stack: Stack) -> None:
    old, new = key_id("acr-cmk", vid("old")), key_id("acr-cmk", vid("new"))
    stack.load(
        scenario(
            {"acr-cmk": key(version("old", created="-200d"), version("new", created="-1h"))},
            registries=[registry("reg000", old)],
            batch_accounts=[batch("batch000", old)],
        )
    )
    run = azcli.measure(stack.admin, stack.env, VAULT, "acr-cmk", new)
    assert (run.commands, run.moved, run.resources) == (2, 2, 2)
    writes = [(c["method"], c["path"].rsplit("/", 1)[-1]) for c in stack.writes()]
    assert sorted(writes) == [("PATCH", "batch000"), ("PATCH", "reg000")]
    assert run.wall > 0 and run.cpu > 0 and run.login > 0
