"""What every command shares: the lazily built service, the consoles, exit codes, and the
parsing of ids and times given on the command line."""

from __future__ import annotations

import getpass
import socket
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console

from rotation.azure.kinds import parse_target
from rotation.model.ids import InvalidId, KeyRef, parse_key_id

if TYPE_CHECKING:  # the SDKs load only when a command runs, so `--help` stays quick
    from rotation.service import Service

# DESIGN.md section 7, plus 1 (an unexpected error: a bug) and 130 (declined at a prompt or Ctrl-C)
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_NEEDS_PERSON, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4, 5
EXIT_ABORTED = 130
out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the width: grep finds it


class Context:
    """Options given before or after the subcommand, and the service, built on first use."""

    def __init__(self) -> None:
        self.output = "table"
        self.query: str | None = None
        self.debug = False
        self.width: int | None = None  # --width N; None: the terminal's, unlimited without one
        self._service: Service | None = None
        self._signed_in = False

    @property
    def for_people(self) -> bool:
        """The default table, with no query: progress, tables and per-item lines are shown."""
        return self.output == "table" and self.query is None

    @property
    def service(self) -> Service:
        """The service for commands that read and write storage only."""
        if self._service is None:
            from rotation.config import ConfigError
            from rotation.service import Service

            try:
                service = Service.from_environment()
            except ConfigError as exc:
                fail(EXIT_USAGE, f"configuration error: {exc}")
            if not service.settings.storage.connection_string:  # storage signs in too
                self._check(service)
            service.ensure_storage()
            self._service = service
        return self._service

    @property
    def azure(self) -> Service:
        """The service for commands that call Key Vault or ARM: the sign-in is checked first."""
        service = self.service
        self._check(service)
        return service

    def _check(self, service: Service) -> None:
        if not self._signed_in:
            check_credential(service, self.debug)
            self._signed_in = True


def check_credential(service: Service, debug: bool) -> None:
    """One token up front: without a usable sign-in the command stops here, in one line, instead
    of after every storage, Key Vault and ARM call has tried the whole credential chain."""
    from rotation.azure.clients import CredentialMissing

    try:
        service.clients.check_credential()
    except CredentialMissing as exc:
        if debug:
            err.print(exc.detail, highlight=False, markup=False)
        fail(EXIT_USAGE, str(exc))


def fail(code: int, message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


def operator() -> str:
    """Who runs the command, for the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def parse_key(text: str) -> KeyRef:
    try:
        return parse_key_id(text)
    except InvalidId as exc:
        raise click.BadParameter(str(exc)) from None


def parse_targets(values: tuple[str, ...]) -> tuple[str, ...] | None:
    if not values:
        return None
    try:
        return tuple(str(parse_target(v)) for v in values)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None


def option_time(text: str | None, name: str) -> Any:
    """An ISO 8601 time given to option `name` (UTC when it names no zone); None when not given."""
    if not text:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
