"""More Functions instances of the app (`make serve INSTANCES=K`), as the host scales out: each
extra instance is a process of its own (its own GIL, as an instance has its own machine) that
indexes function_app, listens on the app's queues with host.json's settings and serves the
app's HTTP routes on a port of its own (instance i on the first's port + i - 1), with the keys
the instances share (in Azure, one key store). In Azure every instance answers HTTP behind the
app's one hostname and takes queue messages; the timers run on one (their singleton lock): here
the first instance's schedule fires them (any instance runs one on demand), and Event Grid
delivers to the first instance's URL (there is no load balancer in front).

`python -m devstack instance` is one such process: it runs until SIGTERM or SIGINT, then lets
the invocations under way finish (the dispatcher's close), as the host drains an instance. It
also stops when the process that started it is gone (`serve` killed outright: nothing else
would stop it, and it would keep taking the queue's messages).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from devstack.functions import FunctionIndex, index
from devstack.functions_host import QueueHostSettings
from devstack.triggers import QueueListener, Timers
from devstack.webhost import FunctionsWebHost, HostKeys

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("devstack.instances")
STOP_GRACE_SECONDS = 60.0  # an instance asked to stop finishes its invocations within this
START_SECONDS = 120.0  # an instance imports function_app, then serves: generous on a loaded machine
KEYS_ENV = "DEVSTACK_HOST_KEYS"  # the shared host keys, for an instance that serves HTTP


def listen(functions: FunctionIndex, host_settings: QueueHostSettings) -> list[QueueListener]:
    """This process's queue triggers, listening (the settings come from the environment)."""
    return [QueueListener(q, os.environ[q.connection], host_settings).start() for q in functions.queues]


class Instance:
    """One more instance: `python -m devstack instance` with the app's environment."""

    def __init__(
        self,
        number: int,
        env: Mapping[str, str],
        visibility_timeout: float | None = None,
        *,
        quiet: bool = False,
        port: int | None = None,
        keys: HostKeys | None = None,
    ) -> None:
        """`port` and `keys`: serve the app's HTTP routes there too (None: the queue only)."""
        command = [sys.executable, "-m", "devstack", "instance", "--name", f"instance-{number}"]
        if visibility_timeout is not None:
            command += ["--visibility-timeout", str(visibility_timeout)]
        if quiet:
            command.append("--quiet")
        environment = dict(env)
        if port is not None and keys is not None:
            command += ["--port", str(port)]
            environment[KEYS_ENV] = keys.to_json()  # not on the command line, where `ps` shows it
        self.number, self.port = number, port
        self.url = f"http://127.0.0.1:{port}" if port is not None else None
        self.process = subprocess.Popen(command, env=environment, cwd=str(REPO))

    def wait_serving(self, timeout: float = START_SECONDS) -> None:
        """Until the instance answers `/admin/host/status` as itself; RuntimeError if it ends."""
        assert self.url is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"instance {self.number} ended (exit {self.process.returncode})")
            try:
                with opener.open(f"{self.url}/admin/host/status", timeout=5) as answer:
                    if json.loads(answer.read()).get("id") == f"instance-{self.number}":
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)  # a real process starting: nothing of ours to wait on instead
        raise RuntimeError(f"instance {self.number} did not serve HTTP on {self.url} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def stop_with_parent(
    stop: threading.Event,
    parent: int,
    *,
    every: float = 1.0,
    parent_of_this: Callable[[], int] = os.getppid,
) -> threading.Thread:
    """Set `stop` once this process's parent is no longer `parent` (it died: the orphan was
    handed to init or a subreaper). Polled, not signalled: PR_SET_PDEATHSIG is Linux-only."""

    def watch() -> None:
        while not stop.wait(every):
            if parent_of_this() != parent:
                log.warning("the process that started this instance is gone: stopping")
                stop.set()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def instance_main(
    name: str, visibility_timeout: float | None, *, quiet: bool = False, port: int | None = None
) -> int:
    """The extra instance's process: listen (and serve HTTP on `port`) until asked to stop, then
    drain."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format=f"%(asctime)s [{name}] %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The audit records are in the audit table; on the console they would drown the host's lines.
    logging.getLogger("rotation.audit").propagate = False
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop_with_parent(stop, os.getppid())
    settings = QueueHostSettings.from_host_json(REPO / "host.json")
    if visibility_timeout is not None:
        settings = QueueHostSettings(**{**settings.__dict__, "visibility_timeout": visibility_timeout})
    functions = index()
    parts: list[Any] = list(listen(functions, settings))
    log.info("%s listening on %s", name, ", ".join(q.dispatcher.queue.queue_name for q in parts))
    if port is not None:
        parts += serve_http(functions, name, port)
    stop.wait()
    for part in reversed(parts):
        part.stop()
    return 0


def serve_http(functions: FunctionIndex, name: str, port: int) -> list[Any]:
    """The app's HTTP front on this instance, with the shared keys; timers only on demand (the
    first instance's schedule fires them)."""
    keys = HostKeys.from_json(os.environ[KEYS_ENV])
    timers = Timers(functions.timers)
    web = FunctionsWebHost(functions, keys, timers.fire, instance=name)
    bound = web.serve(port)
    log.info("%s serving HTTP on http://127.0.0.1:%d", name, bound)
    return [timers, web]
