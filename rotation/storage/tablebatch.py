"""One Table Storage entity group transaction of upserts (`POST /$batch`), framed here.

azure-data-tables' `submit_transaction` builds the same request, but frames its multipart body
and reads the answer through the standard library's `email` package: about 0.3 ms of CPU per
entity, more than the rest of an audit record costs (docs/performance.md, "CPU per target").
Here the SDK still types each entity (its EDM serializer) and its client still signs and sends
the request (retries, auth, transport); only the framing, and reading each operation's status
line from the answer, are done directly. The bytes on the wire are the SDK's (tested against it).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from wsgiref.handlers import format_date_time

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.core.serialization import AzureJSONEncoder

if TYPE_CHECKING:
    from azure.data.tables import TableClient

MAX_OPERATIONS = 100  # the service's limit for one transaction
_STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ?([^\r\n]*)", re.MULTILINE)


class TransactionRefused(HttpResponseError):
    """The service refused the transaction (or one of its operations: then none was applied)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message=message)
        self.status_code = status


def upsert_entities(table: TableClient, entities: Sequence[Mapping[str, Any]], **options: Any) -> None:
    """Insert-or-merge every entity (one partition, at most 100) in one transaction; all or none.
    Raises TransactionRefused, or the transport's AzureError when no answer came."""
    if not entities:
        return
    if len(entities) > MAX_OPERATIONS:
        raise ValueError(f"a transaction holds at most {MAX_OPERATIONS} operations")
    from azure.data.tables._serialize import _add_entity_properties  # the SDK's EDM typing

    endpoint = f"{table.scheme}://{table._primary_hostname}"  # what submit_transaction posts to
    version = table.api_version
    changeset, batch = f"changeset_{uuid.uuid4()}", f"batch_{uuid.uuid4()}"
    now = format_date_time(time.time())
    parts = []
    for index, entity in enumerate(entities):
        url = f"{endpoint}/{quote(table.table_name, safe='')}({_keys(entity)})"
        body = json.dumps(_add_entity_properties(entity), cls=AzureJSONEncoder)
        parts.append(
            f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {index}\r\n\r\nPATCH {url} HTTP/1.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body.encode())}\r\nx-ms-version: {version}\r\nDataServiceVersion: 3.0\r\n"
            f"Accept: application/json\r\nx-ms-date: {now}\r\nDate: {now}\r\n\r\n{body}\r\n"
        )
    content = (
        f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
        f"{''.join(parts)}--{changeset}--\r\n\r\n--{batch}--\r\n"
    ).encode()
    headers = {
        "x-ms-version": version,
        "DataServiceVersion": "3.0",
        "MaxDataServiceVersion": "3.0;NetFx",
        "Content-Type": f"multipart/mixed; boundary={batch}",
        "Accept": "application/json",
    }
    request = HttpRequest("POST", f"{endpoint}/$batch", headers=headers, content=content)
    response = table._client.send_request(request, stream=True, **options)
    _check(response.status_code, response.read(), len(entities))


def _keys(entity: Mapping[str, Any]) -> str:
    """`PartitionKey='..',RowKey='..'` as the SDK writes them: quotes doubled, then URL-quoted."""
    pk, rk = (quote(str(entity[name]).replace("'", "''"), safe="") for name in ("PartitionKey", "RowKey"))
    return f"PartitionKey='{pk}',RowKey='{rk}'"


def _check(status: int, answer: bytes, operations: int) -> None:
    """Raise unless the transaction was accepted and every operation answered 2xx."""
    if status != 202:
        raise TransactionRefused(status, f"transaction refused: HTTP {status}: {_error(answer)}")
    statuses = [(int(code), reason.decode(errors="replace")) for code, reason in _STATUS_LINE.findall(answer)]
    refused = next(((code, reason) for code, reason in statuses if not 200 <= code < 300), None)
    if refused is not None:
        code, reason = refused
        raise TransactionRefused(code, f"transaction refused: HTTP {code} {reason}: {_error(answer)}")
    if len(statuses) != operations:
        raise TransactionRefused(status, f"transaction answered {len(statuses)} of {operations} operations")


def _error(answer: bytes) -> str:
    """The service's error code and message, from the first JSON error in the answer."""
    found = re.search(rb'\{"odata\.error".*\}', answer)
    if found is None:
        return answer[:200].decode(errors="replace")
    try:
        error = json.loads(found.group(0))["odata.error"]
        return f"{error.get('code')}: {(error.get('message') or {}).get('value', '')}".strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        return found.group(0)[:200].decode(errors="replace")
