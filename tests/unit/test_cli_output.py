"""The pure parts of az-style output: tsv rows, csv, and the table of a query's result."""

from __future__ import annotations

import csv
import io

from rich.console import Console

from rotation.doors.cli.output import csv_text, generic_table, tsv_lines


def test_tsv_lists_scalars_one_a_line_and_objects_as_tab_separated_values() -> None:
    assert list(tsv_lines(["a", "b"])) == ["a", "b"]
    assert list(tsv_lines([{"id": "x", "n": 2, "ok": True, "none": None}])) == ["x\t2\ttrue\t"]
    assert list(tsv_lines({"id": "x", "nested": {"a": 1}, "list": [1], "last": "y"})) == ["x\ty"]
    assert list(tsv_lines("only")) == ["only"]
    assert list(tsv_lines(None)) == []
    assert list(tsv_lines([[1, "a"], [2, "b"]])) == ["1\ta", "2\tb"]


def render(data: object) -> str:
    console = Console(width=120, record=True)
    console.print(generic_table(data))
    return console.export_text()


def test_a_query_result_becomes_rows_and_columns() -> None:
    text = render([{"target": "reg1", "action": "update"}, {"target": "reg2", "extra": "x"}])
    header = text.splitlines()[1]
    assert "target" in header and "action" in header and "extra" in header
    assert "reg1" in text and "reg2" in text
    assert "Result" in render(["a", "b"]) and "only" in render("only")


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_a_header_and_one_row_per_item_with_every_column() -> None:
    text = csv_text([{"target": "reg1", "ok": True}, {"target": 'a,b "c"', "extra": None}])
    assert text.splitlines()[0] == "target,ok,extra"
    assert rows_of(text) == [
        {"target": "reg1", "ok": "true", "extra": ""},
        {"target": 'a,b "c"', "ok": "", "extra": ""},  # quoted, not split
    ]


def test_csv_flattens_an_object_into_one_row() -> None:
    plan = {
        "keyId": "k",
        "summary": {"update": 2, "opted-out": 1},
        "warnings": ["w1", "w2"],
        "steps": [{"target": "t"}],
        "empty": {},
    }
    assert rows_of(csv_text(plan)) == [
        {
            "keyId": "k",
            "summary.update": "2",
            "summary.opted-out": "1",
            "warnings": "w1;w2",  # a list of plain values joined
            "steps": '[{"target": "t"}]',  # a list of objects as its JSON
            "empty": "",
        }
    ]
    assert rows_of(csv_text(["a", "b"])) == [{"value": "a"}, {"value": "b"}]  # plain values: one column
    assert csv_text([]) == "" and csv_text(None) == ""
