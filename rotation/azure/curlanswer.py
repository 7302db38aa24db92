"""What libcurl hands back during one exchange (curl.py), gathered by its callbacks: the answer's
head (only the final one: a proxy's CONNECT answer and 1xx answers come through the same callback
and are dropped when the next status line arrives) and its decoded body, refused past a byte
limit. Then the answer as the response classes (answers.py) read a urllib3 answer: status,
reason, case-insensitive headers (repeated names joined with ", ", as requests joined them) and a
body that is already whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pycurl


class Gathered:
    """The callbacks' state for one exchange at a time: a handle's callbacks are bound to one
    Gathered for the handle's life (curlhandles.Handle) and `start` readies it for the next
    exchange. `limit`: decoded body bytes allowed (None: any); `refused` says why the body was
    refused ("declared": its Content-Length, "over": what arrived). The head's lines are
    collected as they come (`lines.append` is libcurl's header callback: no Python frame per
    line) and parsed once, from the last status line on."""

    def __init__(self, limit: int | None, *, resend: bool = False) -> None:
        self.lines: list[bytes] = []
        self.parts: list[bytes] = []
        self.start(limit, resend=resend)

    def start(self, limit: int | None, *, resend: bool) -> None:
        """Ready for an exchange: nothing of the previous one is left."""
        self.limit, self.resend = limit, resend
        self.lines.clear()
        self.parts.clear()
        self.size = 0
        self.refused = ""
        self.sent = False  # the connection was made and the request was about to go
        self.proxied = False
        self._head: tuple[int, str, Headers] | None = None

    def prerequest(self, *_: object) -> int:
        """Called before the request goes out on a connection. A second call is libcurl resending
        it on a new connection because the reused one closed without an answer: the server may
        have applied it (a key rotated), so only a read may go again; anything else fails as
        urllib3's did (ServiceResponseError) and retry.py, the one retry layer, decides."""
        if self.sent and not self.resend:
            return pycurl.PREREQFUNC_ABORT
        self.sent = True
        return pycurl.PREREQFUNC_OK

    def head(self) -> tuple[int, str, Headers]:
        """The final answer's status, reason and headers."""
        if self._head is None:
            self._head = _parsed(self.lines)
        return self._head

    @property
    def declared(self) -> int:
        value = self.head()[2].get("Content-Length", "")
        return int(value) if value.isdigit() else -1

    def write(self, data: bytes) -> int | None:
        """None: taken; 0 (fewer bytes than offered) makes libcurl abort the exchange."""
        limit = self.limit
        if limit is not None:
            if not self.parts and self.declared > limit:  # only the final answer has a body here
                self.refused = "declared"
                return 0
            if self.size + len(data) > limit:
                self.refused = "over"
                return 0
        self.parts.append(data)
        self.size += len(data)
        return None

    def answer(self) -> CurlAnswer:
        """The answer, taken: the head's lines and the body's parts are let go (an idle handle
        holds no answer)."""
        status, reason, headers = self.head()
        body = b"".join(self.parts)
        self.lines.clear()
        self.parts.clear()
        self._head = None
        return CurlAnswer(status, reason, headers, body)


def _parsed(lines: list[bytes]) -> tuple[int, str, Headers]:
    """A proxy's CONNECT answer and 1xx answers come first: the last status line starts the head."""
    starts = 0
    for index in range(len(lines) - 1, -1, -1):
        if lines[index][:5] == b"HTTP/":
            starts = index
            break
    _, _, rest = lines[starts].decode("latin-1").partition(" ") if lines else ("", "", "0")
    code, _, reason = rest.strip().partition(" ")
    found: dict[str, tuple[str, str]] = {}
    for line in lines[starts + 1 :]:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            continue  # the blank line that ends the head
        name, value = name.strip(), value.strip()
        lower = name.lower()
        if lower in found:
            value = f"{found[lower][1]}, {value}"
        found[lower] = (name, value)
    return int(code), reason, Headers(found)


class Headers(MutableMapping[str, str]):
    """An answer's headers, case-insensitive, each name as it was sent: built in one pass (azure-core's
    CaseInsensitiveDict sets them one by one through MutableMapping.update)."""

    __slots__ = ("_store",)

    def __init__(self, store: dict[str, tuple[str, str]]) -> None:
        self._store = store  # lower-case name -> (name, value)

    def __getitem__(self, name: str) -> str:
        return self._store[name.lower()][1]

    def get(self, name: str, default: Any = None) -> Any:
        found = self._store.get(name.lower())
        return default if found is None else found[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._store

    def __setitem__(self, name: str, value: str) -> None:
        self._store[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._store[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class CurlAnswer:
    """A whole answer in memory, with the part of urllib3's response interface answers.py uses."""

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self._body: bytes | None = body
        self.closed = False

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        """The body (decoded already: libcurl decodes what it asked for), once."""
        body, self._body = self._body or b"", b""
        return body

    def stream(self, amt: int | None = 65536, decode_content: bool | None = None) -> Iterator[bytes]:
        body, size = self.read(), amt or 65536
        for start in range(0, len(body), size):
            yield body[start : start + size]

    def release_conn(self) -> None:
        self.closed = True  # the handle went back to its pool when the exchange ended

    def close(self) -> None:
        self.closed = True
