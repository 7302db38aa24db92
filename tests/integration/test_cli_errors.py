"""CLI errors a first outside trial hit (issue 9): each ends in one line and a documented exit
code, never a traceback, against the local stack."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tests import scenarios as s
from tests.conftest import dead_port
from tests.integration.cli_support import KEY, OLD, load_estate, run


def fleet(stack, *groups: dict) -> None:
    load_estate(stack, [s.registry("reg1", s.key_id("acr-cmk", OLD))], list(groups))


def in_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run `python -m rotation ARGS` on a pseudo-terminal and answer its prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotation", *args], stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    output, answered = b"", False
    while True:
        ready, _, _ = select.select([leader], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the command ended and closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"[y/N]" in output:
            os.write(leader, answer)
            answered = True
    os.close(leader)
    return proc.wait(), output.decode(errors="replace")


def test_python_dash_m_rotation_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rotation", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("Usage: rotation")
    assert "130" in result.stdout  # the exit codes are in the help


def test_declining_the_prompt_exits_130_and_changes_nothing(stack) -> None:
    fleet(stack)
    code, output = in_terminal(["rotate", KEY], b"n\n")
    assert code == 130, output
    assert "aborted" in output and "Traceback" not in output and "Aborted!" not in output
    assert stack.writes("PATCH") == []
    code, output = in_terminal(["rotate", KEY], b"y\n")
    assert code == 0, output
    assert len(stack.writes("PATCH")) == 1


def test_an_audit_window_over_92_days_is_one_line_and_exit_2(stack) -> None:
    since = (datetime.now(UTC) - timedelta(days=120)).isoformat()
    result = run("audit", "list", "--since", since)
    assert result.exit_code == 2
    assert "92 days" in result.output and len(result.output.strip().splitlines()) == 1


def test_audit_show_accepts_a_unique_prefix_and_lists_an_ambiguous_one(stack) -> None:
    runs = stack.service().runs
    first, second = "4da6ce0b-0000-4000-8000-000000000001", "4da6ce0b-1111-4000-8000-000000000002"
    for run_id in (first, second):
        runs.queued(run_id, key_id=KEY, source="cli", actor="cli:test", dry_run=False)
    shown = run("audit", "show", "4da6ce0b-1")
    assert shown.exit_code == 0 and second in shown.stdout
    assert run("-o", "json", "audit", "show", first[:10]).exit_code == 0
    ambiguous = run("audit", "show", "4da6ce0b")
    assert ambiguous.exit_code == 2 and first in ambiguous.output and second in ambiguous.output
    missing = run("audit", "show", "ffff")
    assert missing.exit_code == 2 and "no run ffff" in missing.output
    refused = run("audit", "show", "x' or PartitionKey ne '")
    assert refused.exit_code == 2


def test_without_a_sign_in_the_command_stops_in_one_line(stack, tmp_path) -> None:
    """Issue 9 item 7: no identity endpoint, no az login. IMDS is pointed at a dead loopback port,
    so nothing leaves the machine."""
    fleet(stack)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"):
        stack.monkeypatch.delenv(name, raising=False)
    stack.set(
        AZURE_POD_IDENTITY_AUTHORITY_HOST=f"http://127.0.0.1:{dead_port()}",
        AZURE_CONFIG_DIR=str(tmp_path),  # an az that is installed has no login here
    )
    result = run("plan", KEY)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert (
        "ManagedIdentity, " in lines[0]
        and "AzureCli" in lines[0]
        and "az login" in lines[0]
        and ".env.emulator" in lines[0]
    )
    assert stack.admin.calls()["total"] == 0  # no Key Vault or ARM call was tried without a token
    debug = run("plan", KEY, "--debug")
    assert debug.exit_code == 2 and "EnvironmentCredential:" in debug.output  # the full chain


def test_the_local_stack_identity_still_signs_in(stack) -> None:
    fleet(stack)
    result = run("plan", KEY)
    assert result.exit_code == 0 and "update" in result.stdout


def test_a_group_with_secure_values_is_redeploy_required_under_report(stack) -> None:
    fleet(stack, s.group("nightly-report", "acr-cmk", OLD, secure=True))
    result = run("-o", "json", "plan", KEY, "--query", "steps[?kind=='containergroup'] | [0]")
    step = json.loads(result.stdout)
    assert step["action"] == "redeploy-required" and "secure values" in step["message"]
    stack.set(ROTATION_CONTAINER_GROUP_POLICY="redeploy")
    result = run("-o", "json", "plan", KEY, "--query", "steps[?kind=='containergroup'] | [0]")
    step = json.loads(result.stdout)
    assert step["action"] == "blocked" and step["reason"] == "spec-not-reconstructible"
