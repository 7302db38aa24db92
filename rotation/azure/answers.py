"""azure-core's two response interfaces over a urllib3 answer (transport.py): `azure.core.rest`'s
HttpResponse (what the generated Key Vault and ARM clients send and get) and the older
`azure.core.pipeline.transport.HttpResponse` (storage, identity, older management SDKs).

The headers are urllib3's own (case-insensitive; repeated names joined with ", ", as requests
joined them). A body is read whole by the transport unless the caller streams it; a streamed body
is read in `block_size` chunks, decoded (gzip, deflate) unless asked not to, and its connection
goes back to the pool once read to its end (closed instead when the caller stops half way).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

from azure.core.exceptions import ServiceResponseError, ServiceResponseTimeoutError
from azure.core.pipeline.transport import HttpResponse as LegacyHttpResponse
from azure.core.rest._http_response_impl import HttpResponseImpl
from urllib3.exceptions import HTTPError, ReadTimeoutError


class Answer(Protocol):
    """What these responses read of an answer: urllib3's (transport.py), or one libcurl read
    whole (curlanswer.py)."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> MutableMapping[str, str]: ...
    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes: ...
    def stream(self, amt: int | None = ..., decode_content: bool | None = None) -> Iterator[bytes]: ...
    def release_conn(self) -> None: ...
    def close(self) -> None: ...


def described(request: Any) -> str:
    """A request as errors name it: its method and host (never its query: it may hold a SAS)."""
    return f"{request.method} {urlsplit(request.url).hostname or 'storage'}"


def read_errors(what: str, exc: BaseException) -> Exception | None:
    """The error azure-core raises for a failed read of an answer (retry.py classifies it as a
    connection error, transient): a timeout, or a connection cut or a broken chunk or encoding;
    None for anything else."""
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return ServiceResponseTimeoutError(f"{what}: {exc}", error=exc)
    if isinstance(exc, HTTPError | OSError):
        return ServiceResponseError(f"{what}: {exc}", error=exc)
    return None


@contextmanager
def _reading(internal: Answer, request: Any) -> Iterator[None]:
    """Reading a body: its failure closes the connection and is raised as azure-core's error;
    its end hands the connection back to the pool."""
    try:
        yield
    except BaseException as exc:  # GeneratorExit too: a stream its caller left half read is closed now
        internal.close()
        mapped = read_errors(described(request), exc)
        if mapped is None:
            raise
        raise mapped from exc
    internal.release_conn()


def read_whole(internal: Answer, request: Any) -> bytes:
    """The whole (decoded) body."""
    with _reading(internal, request):
        return internal.read(decode_content=True)


def chunks(internal: Answer, block_size: int, decompress: bool, request: Any) -> Generator[bytes]:
    """A streamed body, chunk by chunk (a caller that stops half way closes the response)."""
    with _reading(internal, request):
        yield from internal.stream(block_size, decode_content=decompress)


class Chunks:
    """A streamed body as azure-core's StreamDownloadGenerator offers it: storage's downloads
    read its `response` and `content_length` and set attributes on it."""

    def __init__(self, pipeline: Any, response: Any, internal: Answer, block_size: int, decompress: bool):
        self.pipeline, self.response, self.request = pipeline, response, response.request
        self.block_size = block_size
        self.content_length = int(internal.headers.get("Content-Length") or 0)
        self._chunks = chunks(internal, block_size, decompress, response.request)

    def __len__(self) -> int:
        return self.content_length

    def __iter__(self) -> Chunks:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """A caller that stops half way (`yield from` closes what it iterates): the connection
        is closed now, not when the garbage collector finds it."""
        self._chunks.close()


class RestResponse(HttpResponseImpl):
    """`azure.core.rest.HttpResponse` for an answer urllib3 read."""

    def __init__(self, request: Any, internal: Answer, block_size: int) -> None:
        headers = internal.headers
        super().__init__(
            request=request,
            internal_response=internal,
            block_size=block_size,
            status_code=internal.status,
            reason=internal.reason or "",
            content_type=headers.get("Content-Type"),
            headers=headers,
            stream_download_generator=_generate,
        )

    # azure-core's backward-compatible __setattr__ maps public names to private ones on every
    # set (a tenth of the response's cost); the names set here are private already.
    def __setattr__(self, name: str, value: Any) -> None:
        if name[:1] == "_":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def keep(self, body: bytes) -> None:
        """The body, read whole by the transport: the response is read and closed."""
        self._content = body
        self.read()

    @classmethod
    def whole(cls, request: Any, internal: Answer, block_size: int) -> RestResponse:
        """The response to an answer read whole, read and closed: what `__init__` and then
        `keep(internal.read())` make, its attributes set at once (azure-core's keyword `__init__`
        and `read` cost a fifth of an ARM call's Python outside the transport)."""
        response = cls.__new__(cls)
        headers = internal.headers
        vars(response).update(
            _request=request,
            _internal_response=internal,
            _block_size=block_size or 4096,
            _status_code=internal.status,
            _reason=internal.reason or "",
            _content_type=headers.get("Content-Type"),
            _headers=headers,
            _stream_download_generator=_generate,
            _is_closed=True,
            _is_stream_consumed=True,
            _json=None,
            _content=internal.read(),
            _text=None,
        )
        internal.close()
        return response


def _generate(pipeline: Any, response: RestResponse, *, decompress: bool = True, **_: Any) -> Chunks:
    """azure-core's stream download generator for a RestResponse: called by keyword (iter_bytes,
    iter_raw) and by position (the deprecated stream_download, which storage's downloads use)."""
    return Chunks(pipeline, response, response._internal_response, response._block_size, decompress)


class LegacyResponse(LegacyHttpResponse):
    """`azure.core.pipeline.transport.HttpResponse` for an answer urllib3 read."""

    def __init__(self, request: Any, internal: Answer, block_size: int) -> None:
        super().__init__(request, internal, block_size=block_size)
        self.status_code = internal.status
        self.headers = internal.headers
        self.reason = internal.reason or ""
        self.content_type = internal.headers.get("Content-Type")
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = read_whole(self.internal_response, self.request)
        return self._body

    def keep(self, body: bytes) -> None:
        """The body, read whole by the transport."""
        self._body = body

    def stream_download(self, pipeline: Any, **kwargs: Any) -> Chunks:
        return Chunks(pipeline, self, self.internal_response, self.block_size, kwargs.get("decompress", True))
