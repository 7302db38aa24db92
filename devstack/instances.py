"""More Functions instances on one queue (`make serve INSTANCES=K`), as the host scales the queue
trigger out: each extra instance is a process of its own (its own GIL, as an instance has its
own machine) that indexes function_app and listens on the app's queues with host.json's
settings. The HTTP routes, Event Grid and the timers stay with the first instance (the one
`serve` runs); in Azure every instance answers those too, but here one front door suffices.

`python -m devstack instance` is one such process: it runs until SIGTERM or SIGINT, then lets
the invocations under way finish (the dispatcher's close), as the host drains an instance.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from devstack.functions import index
from devstack.functions_host import QueueHostSettings
from devstack.triggers import QueueListener

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("devstack.instances")
STOP_GRACE_SECONDS = 60.0  # an instance asked to stop finishes its invocations within this


def listen(host_settings: QueueHostSettings) -> list[QueueListener]:
    """This process's queue triggers, listening (the settings come from the environment)."""
    functions = index()
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
    ) -> None:
        command = [sys.executable, "-m", "devstack", "instance", "--name", f"instance-{number}"]
        if visibility_timeout is not None:
            command += ["--visibility-timeout", str(visibility_timeout)]
        if quiet:
            command.append("--quiet")
        self.number = number
        self.process = subprocess.Popen(command, env=dict(env), cwd=str(REPO))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def instance_main(name: str, visibility_timeout: float | None, *, quiet: bool = False) -> int:
    """The extra instance's process: listen until asked to stop, then drain."""
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
    settings = QueueHostSettings.from_host_json(REPO / "host.json")
    if visibility_timeout is not None:
        settings = QueueHostSettings(**{**settings.__dict__, "visibility_timeout": visibility_timeout})
    listeners = listen(settings)
    log.info("%s listening on %s", name, ", ".join(q.dispatcher.queue.queue_name for q in listeners))
    stop.wait()
    for listener in listeners:
        listener.stop()
    return 0
