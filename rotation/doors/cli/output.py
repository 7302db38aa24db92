"""az-style output: `-o table|json|jsonc|tsv|csv|yaml|none` and `--query` (JMESPath), accepted
before or after the subcommand. Commands hand over their JSON-shaped result and a table printer;
the table is for people, everything else for scripts, and `--query` applies to what JSON shows.
csv is a header and one row per item; a command may name the rows its table shows (inventory's
consumers), and `--query` picks others."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.table import Table

from rotation.doors.cli.context import Context, out
from rotation.doors.cli.grid import use_width

FORMATS = ("table", "json", "jsonc", "tsv", "csv", "yaml", "none")


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Context).output = value


def _set_query(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(value)
    except JMESPathError as exc:
        raise click.BadParameter(" ".join(str(exc).split()), param_hint="--query") from None
    ctx.ensure_object(Context).query = value


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Context).debug = True


def _set_width(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    if value is not None:
        ctx.ensure_object(Context).width = value
        use_width(value)


def output_options[F: Callable[..., Any]](command: F) -> F:
    """The same four options on the group and on every command, so either place works."""
    options = (
        click.option(
            "--output",
            "-o",
            type=click.Choice(FORMATS),
            expose_value=False,
            callback=_set_output,
            help="Output format (default: table). tsv has no headers, for shell loops; csv has one.",
        ),
        click.option(
            "--query",
            metavar="JMESPATH",
            expose_value=False,
            callback=_set_query,
            help="JMESPath query over the JSON result, e.g. \"steps[?action=='update'].target\".",
        ),
        click.option(
            "--debug",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_set_debug,
            help="Show Azure's full error chains and tracebacks.",
        ),
        click.option(
            "--width",
            type=click.IntRange(40, 100_000),
            expose_value=False,
            callback=_set_width,
            help="Fit tables to N columns (default: the terminal's; no limit without a terminal).",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def every_row[F: Callable[..., Any]](command: F) -> F:
    """`--all`: tables list every row, not only what changed, failed or needs a person."""
    return click.option(
        "--all", "every", is_flag=True, help="List every row in the table, not only what changes."
    )(command)


def emit(obj: Context, data: Any, table: Callable[[], None], *, rows: Any = None) -> None:
    """Print `data` in the chosen format; `table` prints the people's view of it (fitted to the
    terminal, plain columns without one: grid.py). `rows`, when
    given, is what csv shows without a `--query` (the items the table lists)."""
    if obj.for_people and obj.query is None:
        table()
        return
    if obj.output == "csv" and obj.query is None and rows is not None:
        data = rows
    plain = json.loads(json.dumps(data, default=str))  # datetimes and the like as strings
    if obj.query is not None:
        import jmespath

        plain = jmespath.search(obj.query, plain)
    if obj.output == "none":
        return
    if obj.output == "json":
        click.echo(json.dumps(plain, indent=2))
    elif obj.output == "jsonc":
        out.print_json(json.dumps(plain))
    elif obj.output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True), nl=False)
    elif obj.output == "tsv":
        for line in tsv_lines(plain):
            click.echo(line)
    elif obj.output == "csv":
        click.echo(csv_text(plain), nl=False)
    else:
        out.print(generic_table(plain))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def tsv_lines(data: Any) -> Iterator[str]:
    """As `az -o tsv`: one line per list item, an object's scalar values tab-separated in order
    (nested objects and lists left out), no header."""
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        if isinstance(row, dict):
            yield "\t".join(_cell(v) for v in row.values() if _scalar(v))
        elif isinstance(row, list):
            yield "\t".join(_cell(v) for v in row if _scalar(v))
        elif row is not None:
            yield _cell(row)


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """An object as one CSV row: nested objects as dotted columns (`rotationPolicy.rotates`),
    a list of plain values joined with `;`, a list of objects as its JSON."""
    if not isinstance(value, dict):
        return {prefix or "value": _csv_cell(value)}
    flat: dict[str, str] = {}
    for name, item in value.items():
        column = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(item, dict):
            flat.update(_flatten(item, column) if item else {column: ""})
        else:
            flat[column] = _csv_cell(item)
    return flat


def _csv_cell(value: Any) -> str:
    if isinstance(value, list):
        if all(_scalar(v) for v in value):
            return ";".join(_cell(v) for v in value)
        return json.dumps(value)
    return json.dumps(value) if isinstance(value, dict) else _cell(value)


def csv_text(data: Any) -> str:
    """A list as a header and one row per item, anything else as one row (RFC 4180 quoting)."""
    rows = [_flatten(r) for r in (data if isinstance(data, list) else [data]) if r is not None]
    if not rows:
        return ""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def generic_table(data: Any) -> Table | str:
    """A table of a query's result: objects become rows, their scalar fields columns."""
    rows = data if isinstance(data, list) else [data]
    table = Table(header_style="bold")
    if rows and all(isinstance(r, dict) for r in rows):
        columns = list(dict.fromkeys(k for r in rows for k, v in r.items() if _scalar(v)))
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        return table
    table.add_column("Result", overflow="fold")
    for row in rows:
        table.add_row(_cell(row) if _scalar(row) else json.dumps(row))
    return table
