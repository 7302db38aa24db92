"""The storage the service prepares: its own containers and the ones its kinds name."""

from __future__ import annotations

import ast
from pathlib import Path

from rotation import service
from rotation.azure.kinds import all_kinds

SERVICE = Path(service.__file__)


def test_the_service_creates_every_store_a_kind_keeps_pending_writes_in() -> None:
    stores = {s for k in all_kinds() if (s := getattr(k, "pending_store", None))}
    assert "rotation-redeploy" in stores  # the container-group kind's saved specs
    assert stores <= set(service.containers())
    assert set(service.CONTAINERS) <= set(service.containers())
    assert len(set(service.containers())) == len(service.containers())


def test_the_service_names_no_single_kind() -> None:
    tree = ast.parse(SERVICE.read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith("rotation.azure.kinds.")}, imported
