"""`python -m devstack serve`: the local stack (`make serve`); runs until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from devstack.instances import instance_main
from devstack.serve import LocalStack, Options, banner, instance_ports, write_env
from devstack.webhost import PortInUse, ensure_free
from emulator.runtime import read_scenario_file
from emulator.scenario import ScenarioError

AUDIT_LOG = Path(".local/serve-audit.jsonl")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start Azurite, the emulator and the function app")
    serve.add_argument("--scenario", type=Path, help="scenario JSON file (docs/scenario.md)")
    serve.add_argument("--env-file", type=Path, help="write the settings (and the local keys) here")
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("LOCAL_FUNCTIONS_PORT", "7071")),
        help="the function app's port (default 7071, or LOCAL_FUNCTIONS_PORT; 0: a free one)",
    )
    serve.add_argument(
        "--emulator-port", type=int, default=0, help="the emulator's port (default: a free one)"
    )
    serve.add_argument("--state-dir", type=Path, help="where the emulator's CA bundle goes")
    serve.add_argument(
        "--settings", type=Path, help="app settings file (default local.settings.json, else the sample)"
    )
    serve.add_argument(
        "--eventgrid-time-scale",
        type=float,
        default=0.0005,
        help="compress Event Grid's retry schedule and TTL by this factor (default 0.0005: all 10 "
        "attempts in about 20 s; 1: Event Grid's real pace)",
    )
    serve.add_argument(
        "--visibility-timeout", type=float, help="override host.json's queue visibilityTimeout (s)"
    )
    serve.add_argument("--lro-seconds", type=float, help="how long emulated ARM writes take (default 1)")
    serve.add_argument("--quiet", action="store_true", help="print only errors")
    serve.add_argument(
        "--instances",
        type=int,
        default=int(os.environ.get("INSTANCES") or 1),
        help="function app instances (default 1, or INSTANCES), the host scaled out: each takes the "
        "queue and serves HTTP, instance i on --port + i - 1",
    )
    serve.add_argument(
        "--audit-log",
        default=os.environ.get("DEVSTACK_AUDIT_LOG", str(AUDIT_LOG)),
        help=f"where the app's audit JSON lines go (default {AUDIT_LOG}, or DEVSTACK_AUDIT_LOG; "
        "'-': this console, as Application Insights would show them)",
    )
    instance = sub.add_parser("instance", help="one more instance on the app's queues (serve starts them)")
    instance.add_argument("--name", default="instance")
    instance.add_argument("--visibility-timeout", type=float)
    instance.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    instance.add_argument("--port", type=int, help="serve the app's HTTP routes here (keys from the env)")
    return parser


def route_audit_lines(path: Path) -> None:
    """Every audit record is a 1-2 KB JSON line (rotation.audit): to a file, so the console shows
    the host's short lines (an invocation, a message moved to poison, a dead letter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    audit = logging.getLogger("rotation.audit")
    audit.addHandler(handler)
    audit.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "instance":
        return instance_main(args.name, args.visibility_timeout, quiet=args.quiet, port=args.port)
    if args.instances < 1:
        print("error: --instances must be 1 or more", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.audit_log != "-":
        route_audit_lines(Path(args.audit_log))
    try:
        scenario = read_scenario_file(args.scenario)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = Options(
        scenario,
        port=args.port,
        emulator_port=args.emulator_port,
        state_dir=args.state_dir,
        settings_file=args.settings,
        eventgrid_time_scale=args.eventgrid_time_scale,
        visibility_timeout=args.visibility_timeout,
        lro_seconds=args.lro_seconds,
        instances=args.instances,
    )
    try:
        for port in instance_ports(args.port, args.instances):
            ensure_free(port)
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stack = LocalStack(options).start()
    except ScenarioError as exc:
        print(f"error: invalid scenario {args.scenario}: {exc}", file=sys.stderr)
        return 2
    except PortInUse as exc:  # taken between the check and the bind
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: the local stack did not start: {exc}", file=sys.stderr)
        return 1
    try:
        if args.env_file:
            write_env(args.env_file, stack.env)
        if not args.quiet:
            print(banner(stack, args.env_file), flush=True)
            if args.audit_log != "-":
                print(f"audit lines go to {args.audit_log} (--audit-log - shows them here)", flush=True)
        stop.wait()
    finally:
        stack.stop()
        if args.env_file:  # its keys and ports are dead now; a stale file would only mislead
            args.env_file.unlink(missing_ok=True)
    if not args.quiet:
        print("local stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
