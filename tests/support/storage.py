"""Empty an Azurite account between tests: every queue, table and container deleted, each kind
found in one listing. Plain HTTP on a kept-alive connection per service, signed once with an
account SAS: the SDK clients take 10-15 ms a call here against about 2 ms, and a test's wipe is
a listing per service plus a delete per thing the test created (about 14 calls)."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import quote, urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import AccountSasPermissions as TablePermissions
from azure.data.tables import ResourceTypes as TableResources
from azure.data.tables import generate_account_sas as table_sas
from azure.storage.blob import generate_account_sas as blob_sas
from azure.storage.queue import generate_account_sas as queue_sas

_NAME = re.compile(rb"<Name>([^<]+)</Name>")
_MARKER = re.compile(rb"<NextMarker>([^<]+)</NextMarker>")
_GONE = (202, 204, 404)  # 404: an earlier attempt on a dropped connection already deleted it


class Endpoint:
    """One storage service of the account: a kept-alive connection, requests signed by `sas`."""

    def __init__(self, url: str, sas: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.base, self.sas = parts.path.rstrip("/"), sas
        self.connection: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, query: str = "") -> http.client.HTTPResponse:
        """The answer, its body read; one retry on a fresh connection when the kept one was
        closed by Azurite (it ends idle connections after a few seconds)."""
        url = f"{self.base}{path}?{query}{'&' if query else ''}{self.sas}"
        headers = {"Accept": "application/json;odata=nometadata", "DataServiceVersion": "3.0"}
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.connection.request(method, url, headers=headers)
                response = self.connection.getresponse()
                response.body = response.read()  # type: ignore[attr-defined]  # read before the next request
                return response
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def expect(self, method: str, path: str, statuses: tuple[int, ...], query: str = "") -> bytes:
        response = self.call(method, path, query)
        if response.status not in statuses:
            raise RuntimeError(f"Azurite {method} {path}: {response.status} {response.body[:300]!r}")  # type: ignore[attr-defined]
        return response.body  # type: ignore[attr-defined]


def _xml_names(endpoint: Endpoint, page: int) -> Iterator[str]:
    """Queue or container names, page by page (`comp=list`, NextMarker)."""
    marker = ""
    while True:
        query = f"comp=list&maxresults={page}" + (f"&marker={quote(marker)}" if marker else "")
        body = endpoint.expect("GET", "/", (200,), query)
        listing, _, tail = body.partition(b"<NextMarker")
        yield from (name.decode() for name in _NAME.findall(listing))
        following = _MARKER.search(b"<NextMarker" + tail) if tail else None
        if not following:
            return
        marker = following[1].decode()


def _table_names(endpoint: Endpoint, page: int) -> Iterator[str]:
    """Table names, page by page (x-ms-continuation-NextTableName)."""
    after = ""
    while True:
        query = f"$top={page}" + (f"&NextTableName={quote(after)}" if after else "")
        response = endpoint.call("GET", "/Tables", query)
        if response.status != 200:
            raise RuntimeError(f"Azurite GET /Tables: {response.status}")
        yield from (t["TableName"] for t in json.loads(response.body)["value"])  # type: ignore[attr-defined]
        after = response.getheader("x-ms-continuation-NextTableName") or ""
        if not after:
            return


class Wiper:
    """Deletes everything in the account `connection_string` names (Azurite's)."""

    def __init__(self, connection_string: str, page: int = 1000) -> None:
        self.page = page  # names per listing page (a test makes it small to prove the paging)
        fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
        account, key = fields["AccountName"], fields["AccountKey"]
        expiry = datetime.now(UTC) + timedelta(days=2)
        everything, kinds = "rwdlc", "sco"  # read write delete list create; service container object
        table_token = table_sas(
            AzureNamedKeyCredential(account, key),
            TableResources(service=True, container=True, object=True),
            TablePermissions(read=True, write=True, delete=True, list=True),
            expiry,
        )
        self.queues = Endpoint(fields["QueueEndpoint"], queue_sas(account, key, kinds, everything, expiry))
        self.tables = Endpoint(fields["TableEndpoint"], table_token)
        self.blobs = Endpoint(fields["BlobEndpoint"], blob_sas(account, key, kinds, everything, expiry))

    def wipe(self) -> None:
        """Each listing is read whole before its deletes (a delete would move a page's marker)."""
        for name in list(_xml_names(self.queues, self.page)):
            self.queues.expect("DELETE", f"/{name}", _GONE)
        for name in list(_table_names(self.tables, self.page)):
            self.tables.expect("DELETE", f"/Tables('{name}')", _GONE)
        for name in list(_xml_names(self.blobs, self.page)):
            self.blobs.expect("DELETE", f"/{name}", _GONE, "restype=container")


@cache
def wiper(connection_string: str) -> Wiper:
    """One per account and process: the SAS is signed once, the connections kept."""
    return Wiper(connection_string)
