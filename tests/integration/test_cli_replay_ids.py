"""`rotation replay --event-id X` where X is no failed item: a usage error naming X, not
"nothing to replay" with exit 0."""

from __future__ import annotations

from click.testing import CliRunner

from rotation.doors.cli import main
from tests import scenarios as s


def test_an_event_id_that_matches_nothing_is_a_usage_error(stack) -> None:
    stack.load(s.scenario({"acr-cmk": s.key(s.version("a", created="-5d"))}))
    result = CliRunner().invoke(main, ["replay", "--event-id", "no-such-event", "--yes"])
    assert result.exit_code == 2, result.output
    assert "no failed item matched the given ids: no-such-event" in result.stderr
    assert "nothing to replay" not in result.stdout


def test_without_ids_an_empty_window_is_still_nothing_to_replay(stack) -> None:
    stack.load(s.scenario({"acr-cmk": s.key(s.version("a", created="-5d"))}))
    result = CliRunner().invoke(main, ["replay", "--yes"])
    assert result.exit_code == 0, result.output
    assert "nothing to replay" in result.stdout
