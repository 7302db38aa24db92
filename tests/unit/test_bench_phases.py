"""bench/phases.py: a phase is charged its own CPU, not that of the phases it calls, and the
product's functions are given back as they were."""

from __future__ import annotations

import importlib
import threading
import time

from bench.phases import PHASES, Phases, ThreadClocks


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_phase_is_charged_its_own_cpu_and_not_its_callees() -> None:
    phases = Phases()
    inner = phases.timed(lambda: _burn(0.02), "inner")

    def both() -> None:
        _burn(0.01)
        inner()

    phases.timed(both, "outer")()
    assert phases.calls == {"outer": 1, "inner": 1}
    assert 0.02 <= phases.cpu["inner"] < 0.03
    assert 0.01 <= phases.cpu["outer"] < 0.02  # its 10 ms, without inner's 20
    phases.reset()
    assert not phases.cpu and not phases.calls


def _resolve(module: str, path: str) -> object:
    owner: object = importlib.import_module(module)
    for part in path.split("."):
        owner = getattr(owner, part)
    return owner


def test_the_wrapped_functions_are_given_back() -> None:
    before = [_resolve(module, path) for module, path, _ in PHASES]
    from rotation.storage import steprows, tablebatch

    sent = steprows.submit_transaction
    with Phases().installed():
        assert steprows.submit_transaction is not sent  # its importers' names are wrapped too
        assert tablebatch.submit_transaction is not sent
    assert [_resolve(module, path) for module, path, _ in PHASES] == before
    assert steprows.submit_transaction is sent


def test_thread_clocks_name_each_thread_that_spent_cpu() -> None:
    clocks = ThreadClocks()
    clocks.start()
    worker = threading.Thread(target=_burn, args=(0.02,), name="worker-7 (burn)")
    worker.start()
    worker.join()
    clocks.stop()
    assert clocks.count["worker"] == 1 and clocks.cpu["worker"] >= 0.02
    assert threading.Thread.run.__qualname__ == "Thread.run"  # put back
