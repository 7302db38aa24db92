"""docs/scenario.md is the scenario format's reference (issue 9 item 13): its example loads, every
top-level field the emulator accepts is documented, and nothing points at DESIGN.md instead."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from emulator import scenario
from emulator.state import World

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "scenario.md").read_text()


def test_the_example_loads_into_the_emulator() -> None:
    block = re.search(r"```json\n(.*?)\n```", DOC, re.DOTALL)
    assert block, "docs/scenario.md has no json example"
    example = json.loads(block[1])
    world = World()
    scenario.load(world, example)
    assert "contoso-cmk" in world.vaults and len(world.registries) == len(world.container_groups) == 1


def test_every_accepted_top_level_field_is_documented() -> None:
    maps = ("vaults", "identities", "managedHsms")
    lists = ("subscriptions", *scenario.ENTRY_TYPES, *scenario.CMK_KINDS)
    for field in (*maps, *(f for f in lists if f not in maps)):
        scenario.load(World(), {field: {} if field in maps else []})
        assert f"| `{field}` |" in DOC
    try:
        scenario.load(World(), {"undocumented": []})
    except scenario.ScenarioError as exc:
        assert "undocumented" in str(exc)
    else:
        raise AssertionError("an unknown top-level field was accepted")


def test_readme_and_serve_help_point_at_the_doc() -> None:
    readme = (REPO / "README.md").read_text()
    assert "DESIGN.md section 7" not in readme and "docs/scenario.md" in readme
    shown = subprocess.run(
        [sys.executable, "-m", "emulator", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "docs/scenario.md" in " ".join(shown.split()) and "DESIGN.md" not in shown
