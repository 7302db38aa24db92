"""What every command shares: the lazily built service, the consoles, exit codes, and the
parsing of ids and times given on the command line."""

from __future__ import annotations

import getpass
import socket
import sys
from typing import Any

import click
from rich.console import Console

from rotation.config import ConfigError
from rotation.model.ids import CONSUMER_TYPES, InvalidId, KeyRef, parse_key_id, parse_resource_id
from rotation.service import Service

EXIT_OK, EXIT_USAGE, EXIT_NEEDS_PERSON, EXIT_FAILED, EXIT_UNREACHABLE = 0, 2, 3, 4, 5
out = Console()
err = Console(stderr=True)


class Context:
    def __init__(self, output: str) -> None:
        self.output = output
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            try:
                self._service = Service.from_environment()
            except ConfigError as exc:
                fail(EXIT_USAGE, f"configuration error: {exc}")
            self._service.ensure_storage()
        return self._service


def fail(code: int, message: str) -> None:
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
        return tuple(str(parse_resource_id(v, CONSUMER_TYPES)) for v in values)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from None


def _when(text: str | None, name: str) -> Any:
    if not text:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
