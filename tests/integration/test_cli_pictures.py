"""Issue 23 item 6: `inventory --summary` and `report` show, per key, a bar of consumers per
version and a histogram of the age of the version held, before any long table; table and JSON."""

from __future__ import annotations

import json
import re

from tests.integration import report_estate as e
from tests.integration.cli_support import KEY, run

BAR_LINE = re.compile(r"^    (.+?)\s+(█*) ?(\d+)$")


def bars(stdout: str, title: str, key: str = "acr-cmk") -> dict[str, tuple[int, int]]:
    """Under `title` in `key`'s picture: label -> (bar cells, number shown)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key} "))
    at = next(i for i in range(start, len(lines)) if lines[i].strip() == title)
    found = {}
    for line in lines[at + 1 :]:
        if not (match := BAR_LINE.match(line)):
            break
        found[match[1]] = (len(match[2]), int(match[3]))
    return found


def test_inventory_summary_draws_versions_and_ages_and_lists_no_consumer(stack) -> None:
    e.load(stack)
    result = run("inventory", "--summary")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("acr-cmk  contoso-cmk.vault.azure.net  10 consumers (1 follow new versions")
    assert bars(out, "consumers per version") == {
        f"{e.NEW[:8]} (desired, current)": (32, 6),
        e.MID[:8]: (11, 2),
        e.OLD[:8]: (11, 2),
    }
    assert bars(out, "age of the version held") == {
        "0-30 d": (32, 6),
        "31-90 d": (0, 0),
        "91-180 d": (11, 2),
        "181-365 d": (0, 0),
        "over 365 d": (11, 2),
    }
    assert bars(out, "age of the version held", "ext-cmk") == {"unknown": (32, 2)}
    assert "reg5" not in out  # no row per consumer: that is plain `inventory`
    assert out.index("age of the version held") < out.index("versions (consumers)")  # pictures first


def test_inventory_summary_json_has_the_same_numbers(stack) -> None:
    e.load(stack)
    result = run("inventory", "--summary", "-o", "json")
    keys = {k["keyId"]: k for k in json.loads(result.stdout)["keys"]}
    acr = keys[KEY]
    assert [(v["version"], v["consumers"], v["desired"]) for v in acr["versions"]] == [
        (e.NEW, 6, True),
        (e.MID, 2, False),
        (e.OLD, 2, False),
    ]
    assert {a["age"]: a["consumers"] for a in acr["ages"]}["over 365 d"] == 2
    assert (acr["followsNewVersions"], acr["pinned"]) == (1, 9)
    assert keys[e.OUTSIDE_KEY]["outside"] is True


def test_report_draws_the_pictures_before_the_stale_table(stack) -> None:
    e.load(stack)
    result = run("report", "--max-age-days", "90")
    assert result.exit_code == 3
    out = result.stdout
    assert bars(out, "consumers per version")[e.MID[:8]] == (11, 2)
    assert out.index("age of the version held") < out.index("why stale")
    as_json = json.loads(run("report", "--max-age-days", "90", "-o", "json").stdout)
    assert len(as_json["stale"]) == 4  # unchanged; the pictures' numbers are added beside it
    assert [k["keyId"] for k in as_json["keys"]] == [KEY, e.OUTSIDE_KEY]


def test_a_page_that_cannot_be_written_is_one_line_and_exit_2(stack, tmp_path) -> None:
    e.load(stack)
    missing = tmp_path / "no-such-dir" / "report.html"
    result = run("report", "--max-age-days", "90", "--html", str(missing))
    assert result.exit_code == 2
    assert f"error: cannot write {missing}" in result.stderr
    assert not missing.parent.exists()
