"""The admin CLI for people: `python -m emulator fault|clock|state|calls|deliveries|timer`, over
the emulator's admin routes and the local host's admin route, so the runbook needs no curl.

Where to find them: `EMULATOR_ADMIN_URL` (and `LOCAL_FUNCTIONS_URL`, `LOCAL_MASTER_KEY` for
`timer`) from the environment, else from the env file `make serve` wrote (`.env.emulator`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .runtime import AdminClient, read_env_file

DEFAULT_ENV_FILE = Path(".env.emulator")


class CliError(Exception):
    """A message for the person at the terminal; exit 2."""


def _settings(env_file: Path | None) -> dict[str, str]:
    path = env_file or DEFAULT_ENV_FILE
    found = read_env_file(path) if path.exists() else {}
    return {**found, **{k: v for k, v in os.environ.items() if k.startswith(("EMULATOR_", "LOCAL_"))}}


def _admin(settings: dict[str, str]) -> AdminClient:
    url = settings.get("EMULATOR_ADMIN_URL")
    if not url:
        raise CliError("no emulator: start it with `make serve`, or set EMULATOR_ADMIN_URL / --env-file")
    return AdminClient(url)


def _quiet_stdout() -> None:
    """fd 1 onto /dev/null, so what Python still holds for it does not fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _fault(args: argparse.Namespace, admin: AdminClient) -> None:
    if args.action == "list":
        _print(admin.faults())
    elif args.action == "clear":
        admin.clear_faults()
        print("faults cleared")
    else:
        spec = {
            "method": args.method,
            "host": args.host,
            "pathRegex": args.path,
            "status": args.status,
            "retryAfter": args.retry_after,
            "count": args.count,
            "latencyMs": args.latency_ms,
            "drop": args.drop or None,
            "lroResult": args.lro_result,
            "headers": _headers(args.header) or None,
            "nextLink": args.next_link,
            "dripMs": args.drip_ms,
            "bodyBytes": args.body_bytes,
        }
        fault_id = admin.add_fault(**{k: v for k, v in spec.items() if v is not None})
        print(f"fault {fault_id} added")


def _headers(pairs: list[str] | None) -> dict[str, str | None]:
    """`Name: value` pairs; `Name:` alone takes the header away."""
    headers: dict[str, str | None] = {}
    for pair in pairs or []:
        name, _, value = pair.partition(":")
        headers[name.strip()] = value.strip() or None
    return headers


def _timer(args: argparse.Namespace, settings: dict[str, str]) -> None:
    base, key = settings.get("LOCAL_FUNCTIONS_URL"), settings.get("LOCAL_MASTER_KEY")
    if not base or not key:
        raise CliError(
            "no local host: start it with `make serve` (it writes LOCAL_FUNCTIONS_URL and LOCAL_MASTER_KEY)"
        )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"x-functions-key": key, "Content-Type": "application/json"}
    with opener.open(
        urllib.request.Request(f"{base}/admin/functions", headers=headers), timeout=30
    ) as answer:
        names = [f["name"] for f in json.loads(answer.read())["value"] if f["trigger"] == "timerTrigger"]
    matches = [n for n in names if n == args.name] or [n for n in names if n.startswith(args.name)]
    if len(matches) != 1:
        raise CliError(f"timer {args.name!r}: expected one of {', '.join(names)}")
    request = urllib.request.Request(
        f"{base}/admin/functions/{matches[0]}", data=b'{"input": ""}', method="POST", headers=headers
    )
    with opener.open(request, timeout=30) as answer:
        print(
            f"timer {matches[0]} started ({answer.status}); its log lines appear in the make serve terminal"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument(
        "--env-file", type=Path, help=f"settings written by make serve (default {DEFAULT_ENV_FILE})"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fault = sub.add_parser(
        "fault", help="inject faults into emulated Azure calls (and Event Grid deliveries)"
    )
    fault.add_argument("action", choices=["add", "list", "clear"])
    fault.add_argument("--method", help="HTTP method, e.g. PATCH")
    fault.add_argument(
        "--host", help="host glob: management.azure.com, *.vault.azure.net, identity, eventgrid-delivery"
    )
    fault.add_argument("--path", help="regular expression searched in the path, e.g. registries/contosobuild")
    fault.add_argument("--status", type=int, help="answer with this HTTP status")
    fault.add_argument("--retry-after", help="Retry-After header on the answer")
    fault.add_argument("--count", type=int, help="only the next N matching calls (default: all)")
    fault.add_argument("--latency-ms", type=int, help="delay before answering")
    fault.add_argument("--drop", action="store_true", help="close the connection without an answer")
    fault.add_argument(
        "--lro-result", choices=["Succeeded", "Failed", "Canceled"], help="how an ARM write ends"
    )
    fault.add_argument(
        "--header", action="append", help="'Name: value' set on the answer ('Name:' removes it); repeatable"
    )
    fault.add_argument("--next-link", help="replace the answer body's nextLink (e.g. https://evil.test/p2)")
    fault.add_argument("--drip-ms", type=int, help="send the answer's body a byte every N ms")
    fault.add_argument("--body-bytes", type=int, help="answer with a body this long, sent in chunks")
    clock = sub.add_parser("clock", help="the emulator's clock (near-expiry and expiry events fire on it)")
    clock.add_argument("action", choices=["show", "advance"])
    clock.add_argument("amount", nargs="?", help="with advance: 29d, 12h, 30m, 90s")
    sub.add_parser("state", help="the emulated estate, in the scenario format")
    calls = sub.add_parser("calls", help="every call the emulator served, and counts")
    calls.add_argument("--clear", action="store_true", help="forget them")
    sub.add_parser("deliveries", help="Event Grid delivery attempts and dead letters")
    sub.add_parser("activity", help="the activity log: every ARM write, newest first, with its caller")
    timer = sub.add_parser("timer", help="run a timer-triggered function now (sweep_drift, move_poison)")
    timer.add_argument("name", help="the function's name or its unique start (sweep)")
    return parser


def commands_help() -> str:
    """One line per admin command, for `python -m emulator --help` (serve's parser is apart)."""
    subparsers = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    lines = [f"  {choice.dest:<12}{choice.help}" for choice in subparsers._choices_actions]
    return "admin commands (on a running emulator; `python -m emulator COMMAND -h` for each):\n" + "\n".join(
        lines
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args.env_file)
        if args.command == "timer":
            _timer(args, settings)
            return 0
        admin = _admin(settings)
        if args.command == "fault":
            _fault(args, admin)
        elif args.command == "clock":
            if args.action == "advance":
                if not args.amount:
                    raise CliError("clock advance needs an amount, e.g. 29d")
                _print(admin._call("POST", "/clock", {"advance": args.amount}))
            else:
                _print(admin._call("GET", "/clock"))
        elif args.command == "state":
            _print(admin.state())
        elif args.command == "calls":
            if args.clear:
                admin.clear_calls()
                print("calls cleared")
            else:
                _print(admin.calls())
        elif args.command == "deliveries":
            _print(admin._call("GET", "/eventgrid/deliveries")["deliveries"])
        elif args.command == "activity":
            _print(admin._call("GET", "/activity")["events"])
    except BrokenPipeError:  # `python -m emulator calls | head`: the reader has what it wanted
        _quiet_stdout()
        return 0
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, urllib.error.URLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
