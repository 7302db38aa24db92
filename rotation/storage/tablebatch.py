"""One Table Storage entity group transaction (`POST /$batch`), framed here: the audit
records (audit/store.py) and a run's step rows (runs.py) are written this way.

azure-data-tables' `submit_transaction` builds the same request, but frames its multipart body
and reads the answer through the standard library's `email` package: about 0.3 ms of CPU per
entity, more than the rest of an audit record costs (docs/performance.md, "CPU per target").
Here the SDK's client still signs and sends the request (retries, auth, transport); the framing,
reading each operation's status line from the answer, and typing the plain columns (str, bool,
int32: what this product's rows hold) are done directly; any other value is typed by the SDK's
EDM serializer. The bytes on the wire are the SDK's (tested against it).
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
_INT32 = range(-(2**31), 2**31)  # an int the SDK sends untyped (Edm.Int32)
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote(safe="") leaves as it is
_ETAG = re.compile(rb"^ETag: *([^\r\n]+)", re.MULTILINE | re.IGNORECASE)
_STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ?([^\r\n]*)", re.MULTILINE)


class TransactionRefused(HttpResponseError):
    """The service refused the transaction (or one of its operations: then none was applied)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message=message)
        self.status_code = status


Operation = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]


def submit_transaction(
    table: TableClient, operations: Sequence[Operation], **options: Any
) -> list[str | None]:
    """`table.submit_transaction(operations)` for the operations this product sends: `("upsert",
    entity)` (insert or merge), `("upsert", entity, {"mode": "replace"})`, `("delete", entity)`
    (whatever its ETag), `("create", entity)` (insert only: 409 when it exists) and `("update",
    entity, {"etag": etag})` (replace only if unchanged: 412 otherwise). One partition, at most
    100 operations; all or none. Returns each operation's new ETag (None when not answered).
    Raises TransactionRefused, or the transport's AzureError when no answer came."""
    if not operations:
        return []
    if len(operations) > MAX_OPERATIONS:
        raise ValueError(f"a transaction holds at most {MAX_OPERATIONS} operations")
    endpoint = f"{table.scheme}://{table._primary_hostname}"  # what submit_transaction posts to
    version = table.api_version
    changeset, batch = f"changeset_{uuid.uuid4()}", f"batch_{uuid.uuid4()}"
    framing = _Framing(endpoint, table.table_name, version, format_date_time(time.time()))
    opening = f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    parts = "".join(
        f"{opening}Content-ID: {index}\r\n\r\n{framing.operation(op)}\r\n"
        for index, op in enumerate(operations)
    )
    content = (
        f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
        f"{parts}--{changeset}--\r\n\r\n--{batch}--\r\n"
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
    answer = response.read()
    _check(response.status_code, answer, len(operations))
    return _etags(answer)


def upsert_entities(table: TableClient, entities: Sequence[Mapping[str, Any]], **options: Any) -> None:
    """Insert-or-merge every entity in one transaction."""
    submit_transaction(table, [("upsert", entity) for entity in entities], **options)


class _Framing:
    """What every operation of one transaction repeats (the table's URL, the version and date
    headers), framed once per transaction rather than once per entity."""

    def __init__(self, endpoint: str, table_name: str, version: str, now: str) -> None:
        self.table_url = f"{endpoint}/{quote(table_name, safe='')}"
        self.common = f"x-ms-version: {version}\r\nDataServiceVersion: 3.0\r\n"
        self.dated = f"x-ms-date: {now}\r\nDate: {now}\r\n\r\n"

    def operation(self, operation: Operation) -> str:
        """One operation as the SDK serializes it: request line, headers, blank line, body."""
        verb, entity = operation[0], operation[1]
        options: Mapping[str, Any] = operation[2] if len(operation) > 2 else {}
        mode = options.get("mode", "merge")
        mode = str(getattr(mode, "value", mode)).lower()  # an UpdateMode or its value
        line = f"{self.table_url}({_keys(entity)}) HTTP/1.1\r\n"
        common, dated = self.common, self.dated
        if verb == "delete":
            return f"DELETE {line}{common}Accept: application/json;odata=minimalmetadata\r\nIf-Match: *\r\n{dated}"
        body = _body(entity)
        # json.dumps escapes every non-ASCII character: its length is its length in bytes
        size = len(body) if body.isascii() else len(body.encode())
        sized = f"Content-Type: application/json\r\nContent-Length: {size}\r\n"
        if verb == "create":  # insert: the service refuses it (409) when the entity exists
            target = f"{self.table_url} HTTP/1.1\r\n"
            return f"POST {target}{sized}{common}Accept: application/json\r\nPrefer: return-no-content\r\n{dated}{body}"
        if verb == "update":  # replace only the version read (412 when someone wrote it since)
            return f"PUT {line}{sized}{common}Accept: application/json\r\nIf-Match: {options['etag']}\r\n{dated}{body}"
        if verb != "upsert" or mode not in ("merge", "replace"):
            raise ValueError(f"unsupported transaction operation {verb!r} (mode {mode!r})")
        method = "PATCH" if mode == "merge" else "PUT"
        return f"{method} {line}{sized}{common}Accept: application/json\r\n{dated}{body}"


def _body(entity: Mapping[str, Any]) -> str:
    """The entity's JSON, typed as the SDK's EDM serializer types it. The columns this product
    writes (str, bool, int32; dates are ISO strings) are typed here, at half the CPU: a string
    carries `Edm.String`, a bool or an int32 nothing, a None column is left out. Any other value
    (float, datetime, int64, bytes, an Enum, an (value, EdmType) pair...) sends the whole entity
    through the SDK's serializer."""
    typed: dict[str, Any] = {}
    for name, value in entity.items():
        kind = type(value)  # exact: a str or int subclass (an Enum) is the SDK's to convert
        if kind is str:
            typed[name] = value
            typed[f"{name}@odata.type"] = "Edm.String"
        elif kind is bool or (kind is int and value in _INT32):
            typed[name] = value
        elif value is not None:
            from azure.data.tables._serialize import _add_entity_properties  # the SDK's EDM typing

            return json.dumps(_add_entity_properties(entity), cls=AzureJSONEncoder)
    return json.dumps(typed)  # plain values only: the SDK's encoder would write the same


def _keys(entity: Mapping[str, Any]) -> str:
    """`PartitionKey='..',RowKey='..'` as the SDK writes them: quotes doubled, then URL-quoted."""
    return f"PartitionKey='{_quoted(entity['PartitionKey'])}',RowKey='{_quoted(entity['RowKey'])}'"


def _quoted(value: object) -> str:
    text = str(value)
    if _UNRESERVED.fullmatch(text):  # this product's keys: nothing to double or escape
        return text
    return quote(text.replace("'", "''"), safe="")


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


def _etags(answer: bytes) -> list[str | None]:
    """The ETag header of each operation's answer, in order."""
    parts = _STATUS_LINE.split(answer)[3::3]  # split keeps the two groups: text after each status line
    found = [_ETAG.search(part) for part in parts]
    return [match.group(1).decode() if match else None for match in found]


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
