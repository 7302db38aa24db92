"""One table for people, printed two ways. On a terminal, or with `--width N`, a rich table fitted
to the width. Without a terminal (a pipe, a CI log, `| tee`) plain aligned columns, one row a
line and no width limit: rich folds cells at 80 columns there (an AKS row took 80 lines), and
its layout costs about 2 ms a row, where plain columns cost microseconds (bench/render.py).

Cells are plain strings or rich `Text` (styles without markup, so a `[` in a resource name or
an Azure message is printed as it is)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rotation.doors.cli.context import out

Cell = str | Text
# Without a terminal nothing limits the width; rich needs a number, and lines are as long as
# their content anyway (tables are not expanded).
UNLIMITED = 1_000_000
# Short fixed vocabularies never fold (`already-curre`/`nt` reads as nothing): a no_wrap column
# is as wide as its longest value, and rich narrows the free-text ones (targets, messages) instead.
FIXED = frozenset({"action", "outcome", "kind", "from", "to", "from → to", "version", "run", "time"})


class _Width:
    given: int | None = None  # --width N, or COLUMNS=N


def use_width(width: int | None, console: Console = out) -> None:
    """`--width N` (or an exported COLUMNS, as `make demo` sets for the tables it shows), else
    the terminal's width, unlimited without a terminal."""
    columns = os.environ.get("COLUMNS", "")
    _Width.given = width or (int(columns) if columns.isdigit() and int(columns) > 0 else None)
    console._width = _Width.given or (None if console.is_terminal else UNLIMITED)


def plain(console: Console = out) -> bool:
    """Plain columns: no terminal and no width asked for."""
    return not console.is_terminal and _Width.given is None


def styled(text: str | None, style: str = "") -> Text:
    return Text(text or "", style=style)


@dataclass
class Grid:
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        self.rows.append(cells)


def add_columns(table: Table, *names: str) -> Table:
    for name in names:
        if name in FIXED:
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold", min_width=10)  # never one letter a line
    return table


def show(grid: Grid, console: Console = out) -> None:
    if plain(console):
        console.file.write(plain_text(grid.columns, grid.rows))
        return
    table = add_columns(Table(header_style="bold"), *grid.columns)
    for row in grid.rows:
        table.add_row(*row)
    console.print(table)


def _flat(cell: Cell) -> str:
    text = cell.plain if isinstance(cell, Text) else cell
    return text.replace("\n", "; ")


def plain_text(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A header and one line per row, columns two spaces apart, no trailing blanks."""
    lines = [list(columns)] + [[_flat(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )
