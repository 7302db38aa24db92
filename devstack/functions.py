"""What `func start` learns from function_app.py: each function's trigger, read from the
FunctionApp object the way the worker indexes it (nothing of the app changes for it)."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PARAM = re.compile(r"^\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(?P<optional>\?)?\}$")
_SETTING = re.compile(r"^%([^%]+)%$")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: frozenset[str]
    auth_level: str  # anonymous, function or admin
    call: Callable[[Any], Any]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Route parameters when `path` (without /api/) matches this route and method."""
        if self.methods and method.upper() not in self.methods:
            return None
        wanted, given = self.route.strip("/").split("/"), path.strip("/").split("/")
        params: dict[str, str] = {}
        for index, segment in enumerate(wanted):
            parameter = _PARAM.match(segment)
            if index >= len(given) or not given[index]:
                if parameter and parameter["optional"]:
                    continue
                return None
            if parameter:
                params[parameter["name"]] = given[index]
            elif segment.lower() != given[index].lower():
                return None
        return params if len(given) <= len(wanted) else None

    @property
    def literal_segments(self) -> int:
        """Routes with more literal segments win, as in ASP.NET routing (rotations/plan over {runId})."""
        return sum(1 for s in self.route.split("/") if not _PARAM.match(s))


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue: str
    connection: str
    call: Callable[[Any], Any]


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: str  # resolved from %SETTING% when it names one
    run_on_startup: bool
    call: Callable[[Any], Any]


@dataclass(frozen=True)
class EventGridFunction:
    name: str
    call: Callable[[Any], Any]


@dataclass
class FunctionIndex:
    http: list[HttpFunction]
    queues: list[QueueFunction]
    timers: list[TimerFunction]
    event_grid: list[EventGridFunction]

    def describe(self) -> list[dict[str, str]]:
        kinds = (
            ("httpTrigger", self.http),
            ("queueTrigger", self.queues),
            ("timerTrigger", self.timers),
            ("eventGridTrigger", self.event_grid),
        )
        return [{"name": f.name, "trigger": kind} for kind, functions in kinds for f in functions]

    def route(self, method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        ordered = sorted(self.http, key=lambda f: -f.literal_segments)
        for function in ordered:
            params = function.match(method, path)
            if params is not None:
                return function, params
        return None


def resolve_setting(value: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    match = _SETTING.match(value)
    if not match:
        return value
    if match[1] not in environ:
        raise ValueError(f"app setting {match[1]} (named by {value}) is not set")
    return environ[match[1]]


def index(module_name: str = "function_app") -> FunctionIndex:
    """Import the app module and index its functions by trigger type."""
    app = importlib.import_module(module_name).app
    found = FunctionIndex([], [], [], [])
    # get_functions() records each name and refuses to see it twice; the worker calls it once per
    # process, but a process that already indexed the app (the tests do) must start afresh.
    app.functions_bindings = {}
    for function in app.get_functions():
        trigger, name, call = (
            function.get_trigger(),
            function.get_function_name(),
            function.get_user_function(),
        )
        kind = trigger.get_binding_name()
        if kind == "httpTrigger":
            methods = frozenset(str(getattr(m, "value", m)).upper() for m in (trigger.methods or []))
            level = str(getattr(trigger.auth_level, "value", trigger.auth_level) or "function").lower()
            found.http.append(HttpFunction(name, trigger.route or name, methods, level, call))
        elif kind == "queueTrigger":
            found.queues.append(
                QueueFunction(name, trigger.queue_name, trigger.connection or "AzureWebJobsStorage", call)
            )
        elif kind == "timerTrigger":
            schedule = resolve_setting(trigger.schedule)
            found.timers.append(TimerFunction(name, schedule, bool(trigger.run_on_startup), call))
        elif kind == "eventGridTrigger":
            found.event_grid.append(EventGridFunction(name, call))
        else:
            raise ValueError(f"function {name}: the local host has no {kind} trigger")
    return found
