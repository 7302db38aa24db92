"""An estate for the pictures and the HTML report: one key with three versions of different ages
held by registries, a Disk Encryption Set that follows new versions by itself, a container group
(a person redeploys it), and a key in a vault this system may not touch."""

from __future__ import annotations

from rotation.model.ids import KeyRef, parse_key_id
from tests import scenarios as s
from tests.integration.cli_support import KEY, run

OLD, MID, NEW = s.vid("old"), s.vid("mid"), s.vid("new")
OUTSIDE_KEY = s.key_id("ext-cmk", vault=s.OTHER_VAULT)


def load(stack) -> None:
    """After it, acr-cmk: NEW held by 6 (one of them moved by a run), MID by 2, OLD by 2."""
    versions = (
        s.version("old", created="-400d"),
        s.version("mid", created="-100d"),
        s.version("new", created="-1h"),
    )
    held = [NEW] * 4 + [MID] * 3 + [OLD]
    base = s.scenario(
        {"acr-cmk": s.key(*versions)},
        registries=[s.registry(f"reg{i}", s.key_id("acr-cmk", v)) for i, v in enumerate(held)]
        + [s.registry(f"ext{i}", s.key_id("ext-cmk", "ab" * 16, vault=s.OTHER_VAULT)) for i in range(2)],
        groups=[s.group("nightly-report", "acr-cmk", OLD)],
        encryption_sets=[s.encryption_set("des-web", s.key_id("acr-cmk", NEW), auto=True)],
        other_vault_keys={"ext-cmk": s.key(s.version("ext", created="-30d"))},
    )
    stack.load(base)
    stack.set(ROTATION_ALLOWED_VAULTS=s.VAULT_HOST)
    moved = run("rotate", KEY, "--yes", "--target", s.registry_id("reg4"))  # MID -> NEW: the last rotation
    assert moved.exit_code == 0, moved.output


def key_ref() -> KeyRef:
    return parse_key_id(KEY)
