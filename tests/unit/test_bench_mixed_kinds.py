"""bench/mixed_kinds.py counts a status-link read as a poll whatever the provider calls the link
(SQL's per-operation types, App Configuration's `operationsStatus`, the databases'
`azureAsyncOperation`), and a GET of a resource or sub-resource as a read."""

from __future__ import annotations

import pytest

from bench.mixed_kinds import classify

SQL = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql"


@pytest.mark.parametrize(
    "path",
    [
        f"{SQL}/locations/westeurope/serverKeyAzureAsyncOperation/op1",
        "/subscriptions/s/providers/Microsoft.Sql/locations/westeurope/encryptionProtectorOperationResults/op1",
        "/subscriptions/s/providers/Microsoft.AppConfiguration/locations/westeurope/operationsStatus/op1",
        "/subscriptions/s/providers/Microsoft.DBforMySQL/locations/westeurope/azureAsyncOperation/op1",
        "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/operations/op1",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/r/operationStatuses/op1",
    ],
)
def test_status_links_are_polls(path: str) -> None:
    assert classify({"method": "GET", "path": path + "?api-version=2023-08-01"})[1] == "poll"


def test_a_sub_resource_get_is_a_read_and_a_put_a_write() -> None:
    assert classify({"method": "GET", "path": f"{SQL}/servers/sql1/encryptionProtector/current"}) == (
        "sqlserver",
        "read",
    )
    assert classify({"method": "PUT", "path": f"{SQL}/servers/sql1/keys/k1"})[1] == "write"
