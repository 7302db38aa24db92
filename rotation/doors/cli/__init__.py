"""`rotation`: the command line for on-call engineers and platform teams.

It talks to Azure with DefaultAzureCredential (az login on a laptop, managed identity in
Azure) and runs reconcile in-process. Exit codes (DESIGN.md section 7): 0 converged or
nothing to do; 2 usage or configuration error; 3 converged but a step needs a person; 4 a
target failed; 5 Key Vault or ARM unreachable.
"""

from __future__ import annotations

from typing import Any

import click
from azure.core.exceptions import AzureError

from rotation.doors.cli.commands_audit import audit
from rotation.doors.cli.commands_replay import deadletters, replay_command
from rotation.doors.cli.commands_run import plan, rotate, sweep_command
from rotation.doors.cli.context import EXIT_UNREACHABLE, Context, fail
from rotation.doors.cli.render import print_plan, print_records
from rotation.storage.audit import AuditUnavailable

__all__ = ["main", "print_plan", "print_records"]


class _Group(click.Group):
    """Storage, Key Vault or ARM failing outside a run ends with exit code 5 and one line, not a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AuditUnavailable, AzureError) as exc:
            fail(
                EXIT_UNREACHABLE,
                f"could not reach storage, Key Vault or ARM: {' '.join(str(exc).split())[:500]}",
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Table for people, JSON for scripts.",
)
@click.pass_context
def main(ctx: click.Context, output: str) -> None:
    """Rotate customer-managed keys into the Azure resources that use them."""
    ctx.obj = Context(output)


for command in (plan, rotate, sweep_command, audit, deadletters, replay_command):
    main.add_command(command)
