"""`make serve`: Azurite, the emulator and the function app hosted like `func start`, wired the
way Azure wires them: each vault's system topic has the event subscription infra/ deploys,
delivering to the app's Event Grid trigger with dead letters in Azurite."""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.functions import index
from devstack.functions_host import QueueHostSettings
from devstack.infra import EventSubscription, event_subscription
from devstack.instances import Instance
from devstack.triggers import QueueListener, Timers
from devstack.webhost import FunctionsWebHost, HostKeys
from emulator.azurite import Azurite
from emulator.runtime import Emulator, use_emulator, write_env_file

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("devstack.host")


@dataclass
class Options:
    scenario: dict[str, Any] | None
    port: int = 7071
    emulator_port: int = 0
    state_dir: Path | None = None
    settings_file: Path | None = None
    eventgrid_time_scale: float = 0.0005
    visibility_timeout: float | None = None  # None: host.json's
    lro_seconds: float | None = None
    extra_settings: dict[str, str] = field(default_factory=dict)  # over the settings file's
    instances: int = 1  # app instances (devstack/instances.py), each on the queue and HTTP


def app_settings(path: Path | None) -> dict[str, str]:
    """`Values` of local.settings.json as `func start` reads them (empty values are unset)."""
    chosen = path or next(
        p for p in (REPO / "local.settings.json", REPO / "local.settings.sample.json") if p.exists()
    )
    values = json.loads(chosen.read_text()).get("Values") or {}
    return {str(k): str(v) for k, v in values.items() if v not in ("", None)}


def instance_ports(first: int, count: int) -> list[int]:
    """Instance i's HTTP port: the first's + i - 1 (0 for the first: each a free one, the
    first's found when it binds)."""
    if first:
        return [first + i for i in range(count)]
    return [0, *(_free_port() for _ in range(count - 1))]


def _free_port() -> int:
    with socket.socket() as probe:  # bound, then released for the instance to bind
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def subscribe(emulator: Emulator, spec: EventSubscription, endpoint: str, storage: str) -> list[str]:
    """The infra/ event subscription on every vault's system topic; returns the vault names."""
    vaults = sorted(v.name for v in emulator.app.world.vaults.values())
    for vault in vaults:
        response = emulator.admin._call(
            "POST",
            "/eventgrid/subscriptions",
            {
                "name": spec.name,
                "topic": vault,
                "endpoint": endpoint,
                "includedEventTypes": list(spec.included_event_types),
                "eventDeliverySchema": spec.delivery_schema,
                "maxDeliveryAttempts": spec.max_delivery_attempts,
                "eventTimeToLiveInMinutes": spec.ttl_minutes,
                "deadLetterConnectionString": storage,
                "deadLetterContainer": spec.dead_letter_container,
            },
        )
        log.debug("subscribed %s", response)
    return vaults


@dataclass
class LocalStack:
    options: Options
    keys: HostKeys = field(default_factory=HostKeys)
    env: dict[str, str] = field(default_factory=dict)
    subscription: EventSubscription = field(default_factory=event_subscription)
    urls: list[str] = field(default_factory=list)  # every instance's HTTP front, the first's first
    _parts: list[Any] = field(default_factory=list)

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        options = self.options
        azurite = Azurite().start()
        self._parts.append(azurite)
        emulator = Emulator(options.scenario, state_dir=options.state_dir, port=options.emulator_port)
        emulator.app.settings.update({"eventGridTimeScale": options.eventgrid_time_scale})
        if options.lro_seconds is not None:
            emulator.app.settings.update({"lroSeconds": options.lro_seconds})
        emulator.start()
        self._parts.append(emulator)
        settings = {
            **app_settings(options.settings_file),
            **options.extra_settings,
            "AzureWebJobsStorage": azurite.connection_string,
        }
        use_emulator(emulator.env)  # this process is the function app: its SDKs go to the emulator
        os.environ.update(settings)
        functions = index()
        host_settings = QueueHostSettings.from_host_json(REPO / "host.json")
        if options.visibility_timeout is not None:
            host_settings = QueueHostSettings(
                **{**host_settings.__dict__, "visibility_timeout": options.visibility_timeout}
            )
        for queue in functions.queues:
            self._parts.append(QueueListener(queue, os.environ[queue.connection], host_settings).start())
        ports = instance_ports(options.port, options.instances)
        extra = [
            Instance(number, os.environ, options.visibility_timeout, port=port, keys=self.keys)
            for number, port in enumerate(ports[1:], start=2)  # this process is instance 1
        ]
        self._parts += extra
        timers = Timers(functions.timers)
        web = FunctionsWebHost(functions, self.keys, timers.fire, instance="instance-1")
        port = web.serve(ports[0])
        self._parts += [timers.start(), web]
        base = f"http://127.0.0.1:{port}"
        for instance in extra:
            instance.wait_serving()
        self.urls = [base, *(str(i.url) for i in extra)]
        for function in functions.event_grid:
            endpoint = (
                f"{base}/runtime/webhooks/eventgrid?functionName={function.name}&code={self.keys.eventgrid}"
            )
            subscribe(emulator, self.subscription, endpoint, azurite.connection_string)
        self.env = {
            **emulator.env,
            "AzureWebJobsStorage": azurite.connection_string,
            "LOCAL_FUNCTIONS_URL": base,
            "LOCAL_FUNCTIONS_URLS": ",".join(self.urls),  # every instance's, the first's first
            "LOCAL_FUNCTION_KEY": self.keys.function,
            "LOCAL_MASTER_KEY": self.keys.master,
            **{k: v for k, v in settings.items() if k.startswith("ROTATION_")},
        }
        self.timers = timers
        self.emulator = emulator

    def stop(self) -> None:
        """Everything, newest first; each part's stop is attempted even if one fails."""
        while self._parts:
            part = self._parts.pop()
            try:
                part.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log.warning("stopping %s: %s", type(part).__name__, exc)


def banner(stack: LocalStack, env_file: Path | None) -> str:
    env, world = stack.env, stack.emulator.app.world
    base, key = env["LOCAL_FUNCTIONS_URL"], env["LOCAL_FUNCTION_KEY"]
    spec = stack.subscription
    lines = [
        f"function app : {base}/api/...   (auth level FUNCTION)",
        f"function key : {key}",
        f'  curl -H "x-functions-key: {key}" -X POST {base}/api/rotations/plan \\',
        '       -d \'{"keyId": "https://contoso-cmk.vault.azure.net/keys/acr-cmk"}\'',
        f"timers       : {', '.join(f'{n} next {t:%H:%M:%S}Z' for n, t in stack.timers.next_runs().items())}",
        "               run one now: python -m emulator timer sweep_drift",
        f"Event Grid   : subscription {spec.name} on {len(world.vaults)} vault topic(s), "
        f"{spec.max_delivery_attempts} attempts, TTL {spec.ttl_minutes} min, "
        f"schedule x{stack.emulator.app.settings.event_grid_time_scale:g}, "
        f"dead letters in {spec.dead_letter_container}/{spec.name.upper()}/",
        f"emulator     : {env['EMULATOR_ADMIN_URL']}  (python -m emulator state|calls|fault|clock|timer)",
        f"instances    : {stack.options.instances}, each on queue rotation-requests and serving HTTP "
        "(the first also runs the timers and takes Event Grid's deliveries):",
        *(f"  instance {i}: {url}/api/..." for i, url in enumerate(stack.urls, start=1)),
        "",
        "# paste into a shell for the rotation CLI and the Azure SDKs (or source the env file):",
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
    ]
    if env_file:
        lines += ["", f"# the same settings are in {env_file}: set -a; . ./{env_file.name}; set +a"]
    lines += ["", "Ctrl-C stops the host, the emulator and Azurite."]
    return "\n".join(lines)


def write_env(path: Path, env: dict[str, str]) -> None:
    write_env_file(path, env)
    path.chmod(0o600)  # it carries the local function and master keys
