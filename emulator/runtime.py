"""Start and control the emulator: in this process (`Emulator`), in a child process
(`EmulatorProcess`, what tests and the demo use so the emulator has its own interpreter), and
over its admin routes (`AdminClient`)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .app import IDENTITY_PATH, EmulatorApp
from .server import ProxyServer
from .tls import CertificateAuthority

EXPIRY_SCAN_SECONDS = 60  # Key Vault's own near-expiry events are not to the second either
ENV_KEYS = (
    "HTTPS_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "EMULATOR_ADMIN_URL",
    "https_proxy",
    "no_proxy",
)


class AdminClient:
    """The admin routes of DESIGN.md section 7, as Python calls. Never goes through a proxy."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._opener = _plain_http_opener()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"emulator admin {method} {path}: {exc.code} {exc.read().decode()}") from exc
        return json.loads(payload) if payload else None

    def health(self) -> bool:
        try:
            return self._call("GET", "/health")["status"] == "ok"
        except (OSError, RuntimeError):
            return False

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")

    def load_scenario(self, scenario: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/scenario", scenario)

    def calls(self) -> dict[str, Any]:
        return self._call("GET", "/calls")

    def clear_calls(self) -> None:
        self._call("DELETE", "/calls")

    def add_fault(self, **fault: Any) -> int:
        return self._call("POST", "/faults", fault)["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def release_holds(self) -> int:
        """End every latency fault's hold under way now; how many calls were held."""
        return int(self._call("POST", "/faults/release")["released"])

    def set_throttling(self, enabled: bool) -> dict[str, Any]:
        return self._call("POST", "/throttling", {"enabled": enabled})

    def throttling(self) -> dict[str, Any]:
        return self._call("GET", "/throttling")

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "/config", settings)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def post(self, path: str, body: Any) -> Any:
        """Any admin POST as given (a test of what a route refuses)."""
        return self._call("POST", path, body)

    def finish_operations(self) -> int:
        """End every pending long-running operation now; how many there were."""
        return int(self._call("POST", "/operations/finish")["finished"])

    def events(self) -> list[dict[str, Any]]:
        return self._call("GET", "/events")["events"]

    def clear_events(self) -> None:
        self._call("DELETE", "/events")

    def reset(self, scenario: dict[str, Any], config: dict[str, Any] | None = None) -> bool:
        """A clean slate for a test in one call: scenario loaded, no faults, no calls, no events;
        with `config`, every knob at its default but those given. False: the emulator was
        untouched since the same reset, so there was nothing to undo."""
        body = {"scenario": scenario} if config is None else {"scenario": scenario, "config": config}
        return bool(self._call("POST", "/reset", body)["reset"])


def _plain_http_opener() -> urllib.request.OpenerDirector:
    """urllib without a proxy and without https: the admin URL is plain HTTP on loopback, and
    build_opener's https handler loads the system CA store (about 50 ms) for every client made.
    Errors still raise HTTPError."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def environment(port: int, bundle: Path, identity_secret: str) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    return {
        "HTTPS_PROXY": base,
        "NO_PROXY": "127.0.0.1,localhost,::1",
        "REQUESTS_CA_BUNDLE": str(bundle),
        "SSL_CERT_FILE": str(bundle),
        "IDENTITY_ENDPOINT": base + IDENTITY_PATH,
        "IDENTITY_HEADER": identity_secret,
        "EMULATOR_ADMIN_URL": base,
        # requests prefers the lower-case spellings when both exist: set them too, so a shell
        # that already had https_proxy still routes the SDKs through the emulator.
        "https_proxy": base,
        "no_proxy": "127.0.0.1,localhost,::1",
    }


# Settings that would make DefaultAzureCredential, or the HTTP stack, go somewhere other than the
# emulator: a CI runner's service principal, workload identity, a corporate proxy.
AMBIENT_KEYS = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "CURL_CA_BUNDLE",
)


def use_emulator(env: dict[str, str], target: Any = None) -> None:
    """Point this process at the emulator: drop ambient credential and proxy settings, then set
    the emulator's (`target` defaults to os.environ; a pytest monkeypatch works too)."""
    if target is None:
        for key in AMBIENT_KEYS:
            os.environ.pop(key, None)
        os.environ.update(env)
        return
    for key in AMBIENT_KEYS:
        target.delenv(key, raising=False)
    for key, value in env.items():
        target.setenv(key, value)


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """KEY=VALUE lines; a value with shell metacharacters (a connection string's `;`) is quoted,
    so the file can also be sourced: `set -a; . ./.env.emulator; set +a`."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    temporary.replace(path)


def read_scenario_file(path: Path | None) -> Any:
    """The scenario JSON in `path` (None: no scenario); ValueError with a message a person can act on."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text())  # its shape is scenario.load()'s to check
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read scenario {path}: {exc}") from exc


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            words = shlex.split(value.strip())
            env[key.strip()] = words[0] if words else ""
    return env


class Emulator:
    """The emulator on a background thread of this process."""

    def __init__(
        self, scenario: dict[str, Any] | None = None, *, state_dir: Path | None = None, port: int = 0
    ) -> None:
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="cmk-emulator-"))
        self.app = EmulatorApp()
        if scenario is not None:
            self.app.load_scenario(scenario)
        self._ca = CertificateAuthority()
        self._server = ProxyServer(self.app, self._ca, port=port)
        self.env: dict[str, str] = {}
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._watch_expiry, name="key-expiry", daemon=True)

    def start(self) -> Emulator:
        bundle = self._ca.write_bundle(self.state_dir / "ca-bundle.pem")
        self._server.start()
        self.env = environment(self._server.port, bundle, self.app.tokens.header_secret)
        self._watch.start()
        return self

    def _watch_expiry(self) -> None:
        """Real time passing also crosses expiry thresholds (the clock route only jumps)."""
        while not self._stopping.wait(EXPIRY_SCAN_SECONDS):
            self.app.key_events.scan()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.env["EMULATOR_ADMIN_URL"])

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop()
        self.app.delivery.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorProcess:
    """`python -m emulator serve` as a child process; `env` is ready when `start` returns."""

    def __init__(
        self,
        scenario_file: Path | None = None,
        *,
        state_dir: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="cmk-emulator-"))
        self.scenario_file = scenario_file
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 30) -> EmulatorProcess:
        env_file = self.state_dir / "emulator.env"
        env_file.unlink(missing_ok=True)
        args = [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--env-file",
            str(env_file),
            "--state-dir",
            str(self.state_dir),
            "--quiet",
            *self.extra_args,
        ]
        if self.scenario_file:
            args += ["--scenario", str(self.scenario_file)]
        clean_env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
        self.process = subprocess.Popen(
            args,
            env=clean_env,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Drain stderr so a chatty emulator can never block on a full pipe; keep the tail.
        self._stderr_tail: list[bytes] = []
        threading.Thread(target=self._drain, name="emulator-stderr", daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                time.sleep(0.1)  # let the drain thread collect the last words
                raise RuntimeError(f"emulator exited: {b''.join(self._stderr_tail).decode()[-2000:]}")
            if env_file.exists():
                self.env = read_env_file(env_file)
                if self.admin.health():
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("emulator did not start within the timeout")

    def _drain(self) -> None:
        stream = self.process.stderr if self.process else None
        for line in stream or []:
            self._stderr_tail = [*self._stderr_tail[-50:], line]

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.env["EMULATOR_ADMIN_URL"])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
