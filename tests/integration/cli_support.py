"""What the CLI tests share: a key with an old and a new version, an estate around it, and a
runner that reads the output as a wide terminal would show it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from click.testing import CliRunner, Result

from rotation.doors.cli import main
from rotation.doors.cli.context import err, out
from tests import scenarios as s

OLD, NEW = s.vid("old"), s.vid("new")
KEY = s.key_id("acr-cmk")


def load_estate(stack: Any, registries: list[dict[str, Any]], groups: Sequence[dict[str, Any]] = ()) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-200d"), s.version("new", created="-1h"))},
            registries=registries,
            groups=list(groups),
        )
    )


@contextmanager
def wide_consoles(width: int = 250) -> Iterator[None]:
    """Rich folds cells at 80 columns when not on a terminal; a wide page keeps words whole."""
    saved = [(console, console._width) for console in (out, err)]
    for console, _ in saved:
        console.width = width
    try:
        yield
    finally:
        for console, previous in saved:
            console._width = previous


def run(*args: str, input: str | None = None) -> Result:
    """Invoke `rotation ARGS`; whatever happens, the output holds no traceback."""
    with wide_consoles():
        result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    assert "Traceback" not in result.output
    return result
