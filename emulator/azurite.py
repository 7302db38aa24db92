"""Start Azurite (npm, pinned in package.json) on free loopback ports, in memory."""

from __future__ import annotations

import ctypes
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Azurite's published development account. It is a well-known constant of the local
# emulator (documented by Microsoft), not a secret, and works nowhere but Azurite.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at http://127\.0\.0\.1:(\d+)"
)


def azurite_command() -> str:
    local = REPO / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        raise RuntimeError("Azurite not found: run `make install` (npm installs it into node_modules)")
    return found


def connection_string(ports: dict[str, int]) -> str:
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={base}:{ports['blob']}/{DEV_ACCOUNT};"
        f"QueueEndpoint={base}:{ports['queue']}/{DEV_ACCOUNT};"
        f"TableEndpoint={base}:{ports['table']}/{DEV_ACCOUNT};"
    )


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when its parent dies, even by SIGKILL, so a
    killed `make serve` or test run leaves no Azurite behind. (Linux ties it to the thread that
    started the child: start Azurite from a thread that lives as long as it should.)"""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Azurite:
    """Azurite in a child process with in-memory persistence; `connection_string` when started."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}
        self._workdir = tempfile.mkdtemp(prefix="cmk-azurite-")

    @property
    def connection_string(self) -> str:
        return connection_string(self.ports)

    def start(self, timeout: float = 60) -> Azurite:
        args = [
            azurite_command(),
            "--blobPort",
            "0",
            "--queuePort",
            "0",
            "--tablePort",
            "0",
            "--blobHost",
            "127.0.0.1",
            "--queueHost",
            "127.0.0.1",
            "--tableHost",
            "127.0.0.1",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]
        self.process = subprocess.Popen(
            args,
            cwd=self._workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,  # one prctl call; start() runs on the thread that outlives Azurite
        )
        ready = threading.Event()
        output: list[str] = []

        def read() -> None:
            stream = self.process.stdout if self.process else None
            for line in stream or []:
                output.append(line)
                match = _LISTENING.search(line)
                if match:
                    self.ports[match[1].lower()] = int(match[2])
                    if len(self.ports) == 3:
                        ready.set()

        threading.Thread(target=read, name="azurite-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Azurite did not start: " + "".join(output)[-2000:])
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
