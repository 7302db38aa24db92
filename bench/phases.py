"""Where one run's CPU goes, by phase, at low distortion: each phase's functions are wrapped to
read their thread's CPU clock (`time.thread_time`) on entry and exit, and a call is charged its
own CPU less that of wrapped calls inside it in the same thread, so the phases add up without
counting anything twice. Two clock reads a wrapped call (about 1 µs), against a profiler's
hook on every Python call. For `bench/profile_run.py --phases`; never imported by the product.

What is left over (`unattributed`) is CPU outside every wrapped function: thread start-up, the
pool's worker loops, the poller threads' own frames, garbage collection in between.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# (module, attribute path, phase). ARM's calls (everything from building the request to the
# parsed answer, LRO polls included) are one phase: the HTTP path; the rest is what a target
# costs around them.
ARM_HTTP = "ARM calls (HTTP path, LRO polls included)"
STORAGE_HTTP = "Table, blob and Key Vault calls (HTTP path)"
PHASES: tuple[tuple[str, str, str], ...] = (
    ("rotation.run.reconcile", "Reconciler.run", "run: the caller's thread, other"),
    ("rotation.run.reconcile", "Reconciler._plan", "plan"),
    ("rotation.run.reconcile", "record_findings", "plan: findings recorded"),
    ("rotation.run.reconcile", "Reconciler._finish", "run: finish (run row, result)"),
    ("rotation.run.gather", "Gatherer.gather", "gather: other"),
    ("rotation.azure.discovery", "call", "discovery: paging and its retry (outside HTTP)"),
    ("rotation.run.reverts", "RevertWatch.review", "revert watch"),
    ("rotation.run.reverts", "RevertWatch.remember", "revert watch"),
    ("rotation.run.apply", "_Steps.one", "step: apply logic, other"),
    ("rotation.run.apply", "call", "step: retry (tenacity)"),
    ("rotation.run.apply", "TargetApply.attempt", "step: apply logic, other"),
    ("rotation.run.lanes", "_Dispatch._finished", "lanes: hand-over"),
    ("concurrent.futures.thread", "ThreadPoolExecutor.submit", "lanes: pool submit"),
    ("rotation.azure.arm", "Arm._send", ARM_HTTP),
    ("rotation.azure.arm", "Arm.write", ARM_HTTP),
    ("rotation.azure.arm", "Arm.begin_patch", ARM_HTTP),
    ("rotation.azure.polling", "WaitFirstARMPolling.run", ARM_HTTP),
    ("rotation.azure.polling", "ResourceFirstARMPolling.run", ARM_HTTP),
    ("azure.core.pipeline", "Pipeline.run", STORAGE_HTTP),
    ("rotation.storage.audit.trail", "AuditTrail.record", "audit: record (hash)"),
    ("rotation.storage.audit.trail", "AuditTrail._write_through", "audit: flush"),
    ("rotation.storage.tablebatch", "submit_transaction", "tables: transaction framing"),
    ("rotation.storage.steprows", "StepRowWriter.add", "tables: step rows"),
)
# The kinds' own code around their calls: reading a resource into consumers, the write body.
KIND_METHODS = {"to_consumers": "kinds: resource -> consumers", "write_body": "kinds: write body"}
# Importers of a wrapped module-level function hold their own reference to it.
IMPORTED = {
    "submit_transaction": (
        "rotation.storage.audit.store",
        "rotation.storage.steprows",
        "rotation.storage.runs",
        "rotation.storage.shardbook",
    ),
}


class Phases:
    """Install the wrappers, `reset` before the measured run, `lines` after it."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        with self._lock:
            self.cpu.clear()
            self.calls.clear()

    @contextmanager
    def installed(self) -> Iterator[Phases]:
        for module, path, phase in PHASES:
            self._wrap_path(module, path, phase)
        self._wrap_kinds()
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()
            self._undo.clear()

    def lines(self, total_cpu: float, consumers: int) -> list[str]:
        each = 1000 / max(1, consumers)
        rows = [
            f"{self.cpu[p] * each:7.3f} ms {100 * self.cpu[p] / total_cpu:5.1f} % {self.calls[p]:8d}  {p}"
            for p in sorted(self.cpu, key=self.cpu.__getitem__, reverse=True)
        ]
        rest = total_cpu - sum(self.cpu.values())
        rows.append(f"{rest * each:7.3f} ms {100 * rest / total_cpu:5.1f} % {'':8s}  unattributed")
        return ["  ms/consumer   share    calls  phase", *rows]

    def _wrap_path(self, module_name: str, path: str, phase: str) -> None:
        module = importlib.import_module(module_name)
        *owners, name = path.split(".")
        owner: Any = module
        for part in owners:
            owner = getattr(owner, part)
        self._wrap(owner, name, phase)
        for importer in IMPORTED.get(name, ()) if not owners else ():
            self._wrap(importlib.import_module(importer), name, phase)

    def _wrap_kinds(self) -> None:
        from rotation.azure.kinds import all_kinds

        done: set[tuple[type, str]] = set()
        for kind in all_kinds():
            for klass in type(kind).__mro__:
                for name, phase in KIND_METHODS.items():
                    if name in vars(klass) and (klass, name) not in done:
                        done.add((klass, name))
                        self._wrap(klass, name, phase)

    def _wrap(self, owner: Any, name: str, phase: str) -> None:
        own = name in vars(owner)  # a class's own method, or one it inherits
        original = getattr(owner, name)
        self._undo.append(lambda: setattr(owner, name, original) if own else delattr(owner, name))
        setattr(owner, name, self.timed(original, phase))

    def timed(self, fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        """`fn`, its CPU charged to `phase` (less that of timed calls inside it)."""
        local, lock, cpu, calls = self._local, self._lock, self.cpu, self.calls
        arm = phase == ARM_HTTP

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[list[Any]] = local.__dict__.setdefault("stack", [])
            if stack and stack[-1][0] == ARM_HTTP and (arm or phase == STORAGE_HTTP):
                return fn(*args, **kwargs)  # inside an ARM call (its pipeline too): one phase
            started = time.thread_time()
            stack.append([phase, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                _, inner = stack.pop()
                with lock:
                    cpu[phase] += spent - inner
                    calls[phase] += 1
                if stack:
                    stack[-1][1] += spent

        return timed


class ThreadClocks:
    """Each thread's CPU between `start` and `stop`, by thread name (numbers dropped): the
    product's pools and pollers, and the bench's own threads (Azurite's and the emulator's
    output readers), which must show nothing."""

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.count: Counter[str] = Counter()
        self._before: dict[int, float] = {}
        self._run: Callable[[threading.Thread], None] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.cpu.clear()
        self.count.clear()
        self._before = {t.ident: _clock(t.ident) for t in threading.enumerate() if t.ident is not None}
        self._run = original = threading.Thread.run
        clocks = self

        def run(thread: threading.Thread) -> None:  # a thread that ends during the run
            try:
                original(thread)
            finally:
                clocks._add(thread, time.thread_time() - clocks._before.get(thread.ident or 0, 0.0))

        setattr(threading.Thread, "run", run)  # noqa: B010 - the class attribute itself, for threads started from now on

    def stop(self) -> None:
        if self._run is not None:
            setattr(threading.Thread, "run", self._run)  # noqa: B010 - put back
            self._run = None
        for thread in threading.enumerate():
            if thread.ident is not None:
                self._add(thread, _clock(thread.ident) - self._before.get(thread.ident, 0.0))

    def lines(self, consumers: int) -> list[str]:
        each = 1000 / max(1, consumers)
        return [
            f"{cpu * each:7.3f} ms/consumer  {name} x{self.count[name]}"
            for name, cpu in sorted(self.cpu.items(), key=lambda item: -item[1])
        ]

    def _add(self, thread: threading.Thread, cpu: float) -> None:
        name = (
            "main"
            if thread is threading.main_thread()
            else re.sub(r"[_-]?\d+$", "", re.sub(r"\s*\(.*\)", "", thread.name))
        )
        with self._lock:
            self.cpu[name] += max(0.0, cpu)
            self.count[name] += 1


def _clock(ident: int) -> float:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ProcessLookupError):  # the thread ended meanwhile
        return 0.0
