"""az-style output (issue 16 item 5, issue 9 item 5): every format, `--query`, and both placed
before or after the subcommand, against the local stack."""

from __future__ import annotations

import json

import pytest
import yaml

from tests import scenarios as s
from tests.integration.cli_support import KEY, NEW, OLD, load_estate, run

UPDATES = "steps[?action=='update'].target"


@pytest.fixture
def fleet(stack):
    registries = [
        s.registry("reg1", s.key_id("acr-cmk", OLD)),
        s.registry("reg2", s.key_id("acr-cmk", OLD), sub=s.SUB_B),
        s.registry("reg3", s.key_id("acr-cmk", NEW)),
    ]
    load_estate(stack, registries)
    return stack


def test_tsv_query_prints_one_id_a_line(fleet) -> None:
    """The issue's own example, options before the subcommand."""
    result = run("-o", "tsv", "--query", UPDATES, "plan", KEY)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [s.registry_id("reg1"), s.registry_id("reg2", sub=s.SUB_B)]


@pytest.mark.parametrize(
    "args",
    [
        ["plan", KEY, "-o", "json"],
        ["plan", "-o", "json", KEY],
        ["plan", KEY, "--output=json"],
        ["-o", "table", "plan", KEY, "-o", "json"],  # after the subcommand wins, as in az
    ],
)
def test_output_is_accepted_after_the_subcommand(fleet, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"] == {"update": 2, "already-current": 1}


def test_json_jsonc_and_yaml_carry_the_same_document(fleet) -> None:
    plain = json.loads(run("plan", KEY, "-o", "json").stdout)
    coloured = json.loads(run("plan", KEY, "-o", "jsonc").stdout)  # no colour codes off a terminal
    as_yaml = yaml.safe_load(run("plan", KEY, "-o", "yaml").stdout)
    assert plain == coloured == as_yaml
    assert plain["desiredVersion"] == NEW and len(plain["steps"]) == 3


def test_tsv_of_objects_is_values_without_headers(fleet) -> None:
    result = run(
        "plan", KEY, "-o", "tsv", "--query", "steps[].{name: target, action: action, from: fromVersion}"
    )
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert sorted(r[1] for r in rows) == ["already-current", "update", "update"]
    assert rows[0] == [s.registry_id("reg1"), "update", OLD]


def test_none_prints_nothing_but_keeps_the_exit_code(fleet) -> None:
    result = run("plan", KEY, "-o", "none")
    assert result.exit_code == 0 and result.stdout == ""
    result = run("rotate", KEY, "--yes", "-o", "none")
    assert result.exit_code == 0 and result.stdout == ""
    assert len(fleet.writes("PATCH")) == 2


def test_query_with_table_output_tabulates_the_result(fleet) -> None:
    result = run("plan", KEY, "--query", "steps[].{target: target, action: action}")
    assert result.exit_code == 0
    assert "action" in result.stdout and "already-current" in result.stdout and "reg3" in result.stdout
    assert "desired version" not in result.stdout  # the query's table, not the plan's


def test_query_and_output_after_nested_subcommands(fleet) -> None:
    run("rotate", KEY, "--yes")
    result = run("audit", "list", "--key", KEY, "--query", "records[?kind=='verified'].target", "-o", "tsv")
    assert result.exit_code == 0
    assert sorted(result.stdout.splitlines()) == sorted(
        [s.registry_id("reg1"), s.registry_id("reg2", sub=s.SUB_B)]
    )


def test_output_between_a_group_and_its_command(fleet) -> None:
    result = run("audit", "-o", "json", "list", "--key", KEY)
    assert result.exit_code == 0 and json.loads(result.stdout)["records"] == []


def test_a_bad_query_or_format_is_a_usage_error(fleet) -> None:
    result = run("plan", KEY, "--query", "steps[?action==")
    assert result.exit_code == 2 and "--query" in result.output
    result = run("plan", KEY, "-o", "xml")
    assert result.exit_code == 2
    assert fleet.admin.calls()["total"] == 0
