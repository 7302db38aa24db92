"""azure-data-tables' names the stores write with, imported on first use: loading the package
costs a cold start that only parses and enqueues an event (function_app) nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.data.tables import UpdateMode


def update_mode() -> type[UpdateMode]:
    """`UpdateMode` (MERGE, REPLACE), imported when a store first writes."""
    from azure.data.tables import UpdateMode

    return UpdateMode
