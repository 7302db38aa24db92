"""`rotation`: the command line for on-call engineers and platform teams.

It talks to Azure with DefaultAzureCredential (az login on a laptop, managed identity in
Azure) and runs reconcile in-process. Exit codes (DESIGN.md section 7): 0 converged or
nothing to do; 2 usage or configuration error; 3 converged but a step needs a person; 4 a
target failed; 5 Key Vault or ARM unreachable; 130 declined at a prompt or interrupted; 1 an
unexpected error (a bug: `--debug` shows the traceback).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import click

from rotation.doors.cli.commands_audit import audit
from rotation.doors.cli.commands_estate import inventory_command, report_command, versions
from rotation.doors.cli.commands_replay import deadletters, replay_command
from rotation.doors.cli.commands_run import plan, rotate, sweep_command
from rotation.doors.cli.context import (
    EXIT_ABORTED,
    EXIT_INTERNAL,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Context,
    err,
    fail,
)
from rotation.doors.cli.grid import use_width
from rotation.doors.cli.output import output_options
from rotation.doors.cli.pipes import guard_stdout
from rotation.doors.cli.render import print_plan, print_records

__all__ = ["main", "print_plan", "print_records"]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]


class _Group(click.Group):
    """Every failure ends in one line and a documented exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except (click.Abort, KeyboardInterrupt):
            fail(EXIT_ABORTED, "aborted: nothing more was changed")
        except Exception as exc:  # noqa: BLE001 - the last guard: one line, never a traceback
            fail_for(exc, ctx.ensure_object(Context).debug)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        formatter.write_text(
            "Exit codes: 0 converged or nothing to do, 2 usage or configuration error, 3 a step "
            "needs a person, 4 a target failed, 5 Key Vault, ARM or storage unreachable, 130 declined "
            "or interrupted, 1 an unexpected error (a bug). -o, --query and --debug also work after "
            "the subcommand. `python -m rotation` is the same command."
        )


def fail_for(exc: Exception, debug: bool) -> None:
    from azure.core.exceptions import AzureError, ClientAuthenticationError

    from rotation.storage.audit import AuditUnavailable

    if debug:
        err.print("".join(traceback.format_exception(exc)), highlight=False, markup=False)
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        fail(EXIT_USAGE, f"no Azure sign-in: {_one_line(exc)[:200]} (run `az login`; --debug shows more)")
    if isinstance(exc, AuditUnavailable | AzureError):
        fail(EXIT_UNREACHABLE, f"could not reach storage, Key Vault or ARM: {_one_line(exc)}")
    fail(EXIT_INTERNAL, f"unexpected {type(exc).__name__}: {_one_line(exc)} (--debug shows the traceback)")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@output_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """Rotate customer-managed keys into the Azure resources that use them."""
    obj = ctx.ensure_object(Context)
    guard_stdout()
    use_width(obj.width)  # a --width after the subcommand applies it again
    # DefaultAzureCredential logs each failed attempt as a warning; the CLI says it in one line
    logging.getLogger("azure.identity").setLevel(logging.DEBUG if obj.debug else logging.ERROR)
    if obj.debug:
        logging.basicConfig(level=logging.WARNING)


for command in (
    plan,
    rotate,
    sweep_command,
    audit,
    deadletters,
    replay_command,
    inventory_command,
    report_command,
    versions,
):
    main.add_command(command)
