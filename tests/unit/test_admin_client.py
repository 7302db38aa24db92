"""The emulator's admin client (emulator/runtime.py): plain HTTP to loopback, made once per
test by the `stack` fixture, so making one must stay cheap: it never loads a CA store (urllib's
default opener does, about 50 ms), and an admin error still raises with the route's answer."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.runtime import AdminClient, Emulator


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(state_dir=tmp_path) as running:
        yield running


def no_ca_store(*_: object, **__: object) -> None:
    raise AssertionError("the admin client loaded a CA store")


def test_an_admin_client_loads_no_ca_store(in_process: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", no_ca_store)
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", no_ca_store)
    admin = AdminClient(in_process.env["EMULATOR_ADMIN_URL"])
    assert admin.health() and admin.reset({"registries": []}) in (True, False)


def test_an_admin_error_raises_with_the_routes_answer(in_process: Emulator) -> None:
    with pytest.raises(RuntimeError, match="400"):
        in_process.admin.post("/reset", {"config": {}})
