"""The CLI's last guard: whatever escapes a command ends in one line and a documented exit code;
`--debug` adds the traceback."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from rotation.doors.cli import fail_for


def ended(exc: Exception, debug: bool, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        fail_for(exc, debug)
    code = stopped.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


def test_an_unexpected_error_is_exit_1_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = ended(RuntimeError("boom\nsecond line"), False, capsys)
    assert code == 1 and "Traceback" not in text
    assert text.strip().startswith("error: unexpected RuntimeError: boom second line")
    assert "--debug" in text


def test_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        code, text = ended(exc, True, capsys)
    assert code == 1 and "Traceback" in text and "test_debug_adds_the_traceback" in text


def test_azure_errors_map_to_their_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert ended(ClientAuthenticationError("no credential"), False, capsys)[0] == 2
    assert ended(ServiceRequestError("connection refused"), False, capsys)[0] == 5
