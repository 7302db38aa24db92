"""Issue 23 item 2: `audit list` in tsv and csv prints records (the next page's token on stderr),
`--continuation` passes the token back, and a reversed window says so (CLI exit 2, HTTP 400)."""

from __future__ import annotations

import csv
import io
import json

import function_app
from tests import scenarios as s
from tests.integration.cli_support import KEY, OLD, load_estate, run
from tests.integration.test_functions import call


def trail_of_two_runs(stack) -> None:
    load_estate(
        stack, [s.registry("reg1", s.key_id("acr-cmk", OLD)), s.registry("reg2", s.key_id("acr-cmk", OLD))]
    )
    for _ in range(2):
        assert run("rotate", KEY, "--dry-run").exit_code == 0


def token_of(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if "--continuation" in line]
    return line.split("--continuation", 1)[1].split()[0]


def test_tsv_prints_records_and_the_token_on_stderr_and_the_token_gives_the_next_page(stack) -> None:
    trail_of_two_runs(stack)
    first = run("audit", "list", "--key", KEY, "--top", "3", "-o", "tsv")
    assert first.exit_code == 0, first.output
    rows = first.stdout.splitlines()
    assert len(rows) == 3 and all("\t" in row and s.key_id("acr-cmk") in row for row in rows)
    token = token_of(first.stderr)
    assert token not in first.stdout
    second = run("audit", "list", "--key", KEY, "--top", "3", "-o", "tsv", "--continuation", token)
    assert second.exit_code == 0, second.output
    following = second.stdout.splitlines()
    assert len(following) == 3 and not set(following) & set(rows)
    six = run("audit", "list", "--key", KEY, "--top", "6", "-o", "tsv").stdout.splitlines()
    assert rows + following == six  # two pages of three are the first six, in order


def test_csv_has_a_header_and_one_row_per_record(stack) -> None:
    trail_of_two_runs(stack)
    result = run("audit", "list", "--key", KEY, "--top", "3", "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3 and {"time", "kind", "runId", "keyId"} <= set(rows[0])
    assert "records" not in rows[0] and "continuation" not in rows[0]
    assert "--continuation" in result.stderr


def test_json_keeps_records_and_continuation_together_and_table_shows_the_token(stack) -> None:
    trail_of_two_runs(stack)
    page = json.loads(run("audit", "list", "--key", KEY, "--top", "3", "-o", "json").stdout)
    assert len(page["records"]) == 3 and page["continuation"]
    table = run("audit", "list", "--key", KEY, "--top", "3")
    assert table.exit_code == 0 and token_of(table.stderr) == page["continuation"]


def test_a_reversed_window_says_so(stack) -> None:
    since, until = "2026-12-08T00:00:00Z", "2026-12-01T00:00:00Z"
    for output in ("table", "json", "tsv"):
        result = run("audit", "list", "--since", since, "--until", until, "-o", output)
        assert result.exit_code == 2, result.output
        assert "reversed" in result.stderr and "continuation" not in result.stderr
    status, body, _ = call(
        function_app.list_audit, "GET", "/api/audit", query={"since": since, "until": until}
    )
    assert status == 400 and "reversed" in body["error"]["message"]
