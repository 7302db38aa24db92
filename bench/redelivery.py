"""Redelivery cost: a Key Vault event delivered again after its run converged, through the
Event Grid door, on the local stack. Counts the product's storage calls (a hook on its own
storage clients) and its ARM and Key Vault calls (the emulator's log) for the second delivery;
the floor is one Table read (the event's ledger row) and one Table write (its tally).

    .venv/bin/python bench/redelivery.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stack import local_stack  # noqa: E402
from bench.summary import record  # noqa: E402
from emulator import EmulatorProcess  # noqa: E402
from tests import scenarios as s  # noqa: E402

FLOOR_CALLS = 2  # the event's ledger row read, and one write of its redelivery tally


def measure(emulator: EmulatorProcess) -> dict[str, Any]:
    """(storage calls, ARM and Key Vault calls) of one redelivery of a converged event."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    import function_app
    from devstack.functions_host import deliver_event_grid, event_grid_events
    from rotation.azure.clients import Clients
    from rotation.config import load_settings
    from rotation.doors.intake import handle_event
    from rotation.doors.worker import handle_message
    from rotation.service import Service, forget_services

    emulator.admin.reset(
        s.scenario(
            {"acr-cmk": s.key(s.version("old", created="-30d"), s.version("new", created="-1h"))},
            registries=[s.registry(f"reg{i}", s.key_id("acr-cmk", s.vid("old"))) for i in range(2)],
        )
    )
    emulator.admin.configure(lroSeconds=0.05, retryAfter=0)
    forget_services()
    event = s.event_grid_event("KeyNewVersionCreated", "acr-cmk", s.vid("new"), event_id="bench-dup")
    assert deliver_event_grid(function_app.on_key_event, [event]) == [None]
    settings = load_settings()
    queue = QueueClient.from_connection_string(
        str(settings.storage.connection_string),
        "rotation-requests",
        message_decode_policy=TextBase64DecodePolicy(),
    )
    [message] = queue.receive_messages(messages_per_page=1, visibility_timeout=300)
    converged = handle_message(Service(settings), message.content)
    queue.delete_message(message)
    calls: list[str] = []
    counted = Service(
        settings, Clients(settings, storage_request_hook=lambda r: calls.append(r.http_request.method))
    )
    counted.ensure_storage()  # a warm instance has done this once already
    calls.clear()
    emulator.admin.clear_calls()
    [again] = event_grid_events([event])
    handle_event(counted, again)
    return {
        "converged": converged.status if converged else None,
        "storage": list(calls),
        "azure": emulator.admin.calls()["total"],
    }


def main() -> int:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    with local_stack(ROTATION_SUBSCRIPTIONS=f"{s.SUB_A},{s.SUB_B}") as emulator:
        r = measure(emulator)
    total = len(r["storage"]) + r["azure"]
    record(
        "redelivery of a converged event (Event Grid door)",
        f"{total} calls",
        f"{FLOOR_CALLS} calls",
        total / FLOOR_CALLS,
        "<= 1.00x",
        f"storage {' '.join(r['storage'])}; ARM + Key Vault {r['azure']}; run {r['converged']}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
