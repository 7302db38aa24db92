"""A redelivered event whose run converged costs at most one Table read and one Table write,
through either door (issue 15): no blob, no audit trail, no ARM or Key Vault call. The product's
own storage clients carry a counting hook (Clients' `storage_request_hook`, azure-core's
`raw_request_hook`), so what is counted is what the doors send."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from azure.storage.queue import QueueClient, TextBase64DecodePolicy

import function_app
from devstack.functions_host import deliver_event_grid, event_grid_events
from rotation.azure.clients import Clients
from rotation.config import load_settings
from rotation.doors.intake import handle_event
from rotation.doors.worker import handle_message
from rotation.service import Service
from rotation.storage.ledger import EVENT, row_key
from tests import scenarios as s

V1 = s.vid("old")


class StorageCalls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []  # (method, service, path)

    def __call__(self, request: Any) -> None:
        http = request.http_request
        url = urlsplit(http.url)
        self.calls.append((http.method, url.netloc.split(".")[0] or url.netloc, unquote(url.path)))


def counted_service() -> tuple[Service, StorageCalls]:
    counter = StorageCalls()
    settings = load_settings()
    service = Service(settings, Clients(settings, storage_request_hook=counter))
    service.ensure_storage()  # a warm instance has done this once already
    counter.calls.clear()
    return service, counter


def estate(stack) -> None:
    stack.load(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-30d"), s.version("new", created="-1h"))},
            registries=[s.registry(f"reg{i}", s.key_id("acr-cmk", V1)) for i in range(2)],
        )
    )


def new_version_event(event_id: str) -> dict[str, Any]:
    return s.event_grid_event("KeyNewVersionCreated", "acr-cmk", s.vid("new"), event_id=event_id)


def converge(stack, event: dict[str, Any]) -> None:
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]
    dispatcher = stack.dispatcher(function_app.run_rotation)
    assert dispatcher.run_until_idle(timeout=90).failures == []
    dispatcher.close()


def event_row(service: Service, event_id: str) -> dict[str, Any]:
    return dict(service.ledger.table.get_entity(EVENT, row_key(event_id)))


def test_an_event_grid_redelivery_is_one_read_and_one_write_and_counted(stack) -> None:
    estate(stack)
    converge(stack, new_version_event("dup-eg"))
    stack.admin.clear_calls()
    service, counter = counted_service()
    [event] = event_grid_events([new_version_event("dup-eg")])
    before = service.audit.query(top=1000)[0]
    counter.calls.clear()

    assert handle_event(service, event) is None

    methods = [method for method, _, _ in counter.calls]
    assert methods == ["GET", "PATCH"] or methods == ["GET", "MERGE"], counter.calls
    assert all("RotationLedger" in path for _, _, path in counter.calls)  # no blob, no audit table
    assert stack.admin.calls()["total"] == 0  # neither ARM nor Key Vault
    assert service.audit.query(top=1000)[0] == before  # the trail is unchanged
    raw = QueueClient.from_connection_string(stack.storage, "rotation-requests")
    assert raw.get_queue_properties().approximate_message_count == 0
    row = event_row(service, "dup-eg")
    assert row["Redeliveries"] == 1 and row["LastRedeliverySource"] == "eventgrid"
    assert row["Outcome"] == "succeeded" and row["RunId"]  # the converged run's record is kept

    handle_event(service, event)
    assert event_row(service, "dup-eg")["Redeliveries"] == 2


def test_a_queued_duplicate_is_one_read_and_one_write_and_its_run_says_skipped(stack) -> None:
    estate(stack)
    for _ in range(2):  # both delivered before either ran: two requests queued for one event
        assert deliver_event_grid(function_app.on_key_event, [new_version_event("dup-q")]) == [None]
    queue = QueueClient.from_connection_string(
        stack.storage, "rotation-requests", message_decode_policy=TextBase64DecodePolicy()
    )
    first, second = queue.receive_messages(messages_per_page=2, visibility_timeout=300)
    plain = Service(load_settings())
    handled = handle_message(plain, first.content)
    assert handled is not None and handled.status == "succeeded"
    stack.admin.clear_calls()
    service, counter = counted_service()

    assert handle_message(service, second.content) is None

    methods = [method for method, _, _ in counter.calls]
    assert len(methods) == 2 and methods[0] == "GET" and methods[1] in ("PATCH", "MERGE"), counter.calls
    assert "RotationLedger" in counter.calls[0][2] and "RotationRuns" in counter.calls[1][2]
    assert stack.admin.calls()["total"] == 0
    second_id = second.content.split('"requestId"')[1].split('"')[1]
    skipped = service.runs.get(second_id)
    assert skipped is not None and skipped["status"] == "skipped"
    assert "duplicate of run" in skipped["message"] and "dup-q" in skipped["message"]
