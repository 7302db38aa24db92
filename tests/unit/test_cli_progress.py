"""Without a terminal a run says how far it is every few seconds (issue 23 item 3), timed by an
injected clock, and the plain table keeps one row a line whatever it holds."""

from __future__ import annotations

from rich.text import Text

from rotation.doors.cli.grid import plain_text
from rotation.doors.cli.progress import StepLines
from rotation.model.results import StepResult


def step(action: str, outcome: str) -> StepResult:
    return StepResult("/x", "registry", action, action, "", None, None, outcome)


def test_a_line_every_five_seconds_and_one_at_the_end(capsys) -> None:
    now = [0.0]
    lines = StepLines(30, clock=lambda: now[0])
    for i in range(30):
        now[0] = i * 0.5  # a step every half second: 15 s in all
        lines(step("update", "failed" if i == 3 else "verified"))
        lines(step("already-current", "skipped"))  # not an update: not counted
    lines.finish()
    said = capsys.readouterr().err.splitlines()
    assert said == [
        "updating 30 consumers…",
        "updated 11 of 30, 1 failed in 5 s",
        "updated 21 of 30, 1 failed in 10 s",
        "updated 30 of 30, 1 failed in 14 s",  # finish: the last step came at 14.5 s
    ]


def test_plain_columns_keep_a_row_on_one_line_and_markup_as_text() -> None:
    text = plain_text(
        ("target", "detail"),
        [("reg[bold]1", Text("first\nsecond", style="red")), ("a-much-longer-name", "x")],
    )
    assert text.splitlines() == [
        "target              detail",
        "reg[bold]1          first; second",
        "a-much-longer-name  x",
    ]
