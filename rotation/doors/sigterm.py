"""The process's SIGTERM: the Functions host stopping this instance asks the runs under way to
stop (they close as `interrupted` and requeue the rest). Apart from the queue door so that
`function_app` installs the handler at import without loading the run's modules."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

from rotation.run.stopping import Stop


class HostStop:
    """The process's stop (SIGTERM) and how many runs are under way."""

    def __init__(self) -> None:
        self.stop = Stop()
        self.running = 0
        self.lock = threading.Lock()


host = HostStop()


def stop_on_sigterm() -> bool:
    """SIGTERM asks the runs under way to stop. A handler already set (a local host's own
    shutdown) is called too and keeps ending the process; without one, the process ends once
    the runs closed (or their grace is over, plus a little for the closing records), at once
    when none is under way, as before. From the main thread only (True if the handler was set)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        host.stop.ask(signal.Signals(signum).name)
        if callable(previous):
            previous(signum, frame)
        else:  # a second SIGTERM now ends the process at once, as the host insists
            signal.signal(signum, signal.SIG_DFL)
            threading.Thread(target=_exit_when_closed, args=(signum,), daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    return True


def _exit_when_closed(signum: int, poll: float = 0.1) -> None:
    until = time.monotonic() + host.stop.grace_seconds + 10
    while host.running and time.monotonic() < until:
        time.sleep(poll)
    os.kill(os.getpid(), signum)  # the default action again (set by the handler)
