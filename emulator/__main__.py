"""`python -m emulator serve --scenario FILE [--env-file PATH]`: run until SIGINT/SIGTERM.
`python -m emulator fault|clock|state|calls|deliveries|timer ...`: the admin CLI (emulator/cli.py)."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path

from .runtime import Emulator, read_scenario_file, write_env_file
from .scenario import ScenarioError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["serve"] and not set(argv[:1]) & {"-h", "--help"}:
        from .cli import main as admin_cli

        return admin_cli(argv)
    args = _parser().parse_args(argv)

    try:
        scenario = read_scenario_file(args.scenario)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        emulator = Emulator(scenario, state_dir=args.state_dir, port=args.port)
    except ScenarioError as exc:
        print(f"error: invalid scenario {args.scenario}: {exc}", file=sys.stderr)
        return 2
    settings = {}
    if args.lro_seconds is not None:
        settings["lroSeconds"] = args.lro_seconds
    if args.retry_after is not None:
        settings["retryAfter"] = args.retry_after
    emulator.app.settings.update(settings)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    emulator.start()
    azurite = None
    if args.azurite:
        from .azurite import Azurite

        azurite = Azurite().start()
        # Azurite's published development account: a well-known local constant, not a secret.
        emulator.env["AzureWebJobsStorage"] = azurite.connection_string
    if args.env_file:
        write_env_file(args.env_file, emulator.env)
    if not args.quiet:
        _banner(emulator, args.env_file)
    stop.wait()
    if azurite is not None:
        azurite.stop()
    emulator.stop()
    if not args.quiet:
        print("emulator stopped")
    return 0


def _parser() -> argparse.ArgumentParser:
    from .cli import commands_help

    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description=__doc__,
        epilog=commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the emulator")
    serve.add_argument("--scenario", type=Path, help="scenario JSON file (format: docs/scenario.md)")
    serve.add_argument("--env-file", type=Path, help="also write the settings as KEY=VALUE lines here")
    serve.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    serve.add_argument("--state-dir", type=Path, help="where the CA bundle goes (default: a temp dir)")
    serve.add_argument("--lro-seconds", type=float, help="how long ARM writes take (default 1)")
    serve.add_argument("--retry-after", help="Retry-After on long-running operations (default 1)")
    serve.add_argument("--quiet", action="store_true", help="print nothing")
    serve.add_argument(
        "--azurite",
        action="store_true",
        help="also start Azurite (in memory) and add AzureWebJobsStorage to the settings",
    )
    return parser


def _banner(emulator: Emulator, env_file: Path | None) -> None:
    """Where each service answers, and the settings as shell exports."""
    world = emulator.app.world
    print(f"emulator listening on 127.0.0.1:{emulator.port}")
    print(f"  Key Vault : https://<vault>.vault.azure.net ({len(world.vaults)} vaults) via the proxy")
    print(
        f"  ARM       : https://management.azure.com ({len(world.registries)} registries, "
        f"{len(world.batch_accounts)} Batch accounts, {len(world.container_groups)} container groups)"
    )
    print(f"  identity  : {emulator.env['IDENTITY_ENDPOINT']}")
    print(f"  admin     : {emulator.env['EMULATOR_ADMIN_URL']}  (GET /state, /calls; POST /faults, ...)")
    print("\n# paste into a shell to point the Azure SDKs (and the product) at the emulator:")
    for key, value in emulator.env.items():
        print(f"export {key}={shlex.quote(value)}")
    if env_file:
        print(f"\n# the same settings are in {env_file}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
