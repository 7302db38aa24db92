"""Load function_app.py the way the production Python worker indexes it, so a binding mistake
(a parameter name that differs from arg_name, an unsupported annotation) fails here, not in Azure."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from azure_functions_runtime import functions, loader
from azure_functions_runtime.bindings import meta

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "on_key_event": ("eventGridTrigger", "event"),
    "run_rotation": ("queueTrigger", "msg"),
    "plan_rotation": ("httpTrigger", "req"),
    "start_rotation": ("httpTrigger", "req"),
    "get_rotation": ("httpTrigger", "req"),
    "list_audit": ("httpTrigger", "req"),
    "sweep_drift": ("timerTrigger", "timer"),
    "replay_failed": ("httpTrigger", "req"),
    "move_poison": ("timerTrigger", "timer"),
}


class _Message:
    """Stands in for a host protobuf message: keeps its keyword arguments as attributes."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class Protos:
    class BindingInfo(_Message):
        undefined, string, binary, stream = 0, 1, 2, 3
        out, inout = 1, 2

    class RpcFunctionMetadata(_Message):
        pass

    class RpcRetryOptions(_Message):
        pass

    class RetryStrategy:
        exponential_backoff, fixed_delay = 0, 1

    RetryStrategyNames: ClassVar[dict[str, int]] = {"exponential_backoff": 0, "fixed_delay": 1}


@pytest.fixture
def indexed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.setenv("ROTATION_SWEEP_SCHEDULE", "0 0 * * * *")
    meta.load_binding_registry()
    functions_found = loader.index_function_app(str(REPO / "function_app.py"))
    metadata, _logs = loader.process_indexed_function(
        Protos, functions.Registry(), functions_found, str(REPO)
    )
    return metadata


def test_worker_indexes_every_function_with_its_binding(indexed: list[Any]) -> None:
    by_name = {m.name: m for m in indexed}
    for name, (trigger, argument) in EXPECTED.items():
        assert name in by_name, f"{name} was not indexed"
        bindings = by_name[name].bindings
        assert bindings[argument].type == trigger, (name, {k: v.type for k, v in bindings.items()})
        assert by_name[name].properties == {"worker_indexed": "True"}


def test_worker_rejects_a_parameter_named_differently_from_arg_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check the production indexer makes and plain get_functions() does not."""
    (tmp_path / "broken_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.queue_trigger(arg_name='msg', queue_name='q', connection='AzureWebJobsStorage')\n"
        "def run(message: func.QueueMessage) -> None:\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    meta.load_binding_registry()
    found = loader.index_function_app(str(tmp_path / "broken_app.py"))
    with pytest.raises(Exception, match=r"msg|message"):
        loader.process_indexed_function(Protos, functions.Registry(), found, str(tmp_path))
    sys.modules.pop("broken_app", None)
