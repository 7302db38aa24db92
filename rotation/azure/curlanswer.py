"""What libcurl hands back during one exchange (curl.py), gathered by its callbacks: the answer's
head (only the final one: a proxy's CONNECT answer and 1xx answers come through the same callback
and are dropped when the next status line arrives) and its decoded body, refused past a byte
limit. Then the answer as the response classes (answers.py) read a urllib3 answer: status,
reason, case-insensitive headers (repeated names joined with ", ", as requests joined them) and a
body that is already whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pycurl
from azure.core.utils import CaseInsensitiveDict

_LENGTH = b"content-length:"


class Gathered:
    """The callbacks' state. `limit`: decoded body bytes allowed (None: any); `refused` says why
    the body was refused ("declared": its Content-Length, "over": what arrived)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.status_line = b""
        self.lines: list[bytes] = []
        self.declared = -1
        self.parts: list[bytes] = []
        self.size = 0
        self.refused = ""
        self.sent = False  # the connection was made and the request was about to go
        self.proxied = False

    def prerequest(self, *_: object) -> int:
        self.sent = True
        return pycurl.PREREQFUNC_OK

    def header(self, line: bytes) -> None:
        if line[:5] == b"HTTP/":  # a new answer's head: whatever came before was not the final one
            self.status_line, self.lines, self.declared = line, [], -1
        elif line[:15].lower() == _LENGTH:
            value = line[15:].strip()
            self.declared = int(value) if value.isdigit() else -1
            self.lines.append(line)
        elif line[:1] not in (b"\r", b"\n", b""):
            self.lines.append(line)

    def write(self, data: bytes) -> int | None:
        """None: taken; 0 (fewer bytes than offered) makes libcurl abort the exchange."""
        limit = self.limit
        if limit is not None:
            if not self.parts and self.declared > limit:
                self.refused = "declared"
                return 0
            if self.size + len(data) > limit:
                self.refused = "over"
                return 0
        self.parts.append(data)
        self.size += len(data)
        return None

    def answer(self) -> CurlAnswer:
        _, _, rest = self.status_line.decode("latin-1").partition(" ")
        code, _, reason = rest.strip().partition(" ")
        return CurlAnswer(int(code), reason, _headers(self.lines), b"".join(self.parts))


def _headers(lines: list[bytes]) -> CaseInsensitiveDict:
    found: dict[str, tuple[str, str]] = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        lower = name.lower()
        if lower in found:
            value = f"{found[lower][1]}, {value}"
        found[lower] = (name, value)
    return CaseInsensitiveDict(found.values())


class CurlAnswer:
    """A whole answer in memory, with the part of urllib3's response interface answers.py uses."""

    def __init__(self, status: int, reason: str, headers: CaseInsensitiveDict, body: bytes) -> None:
        self.status, self.reason, self.headers = status, reason, headers
        self._body: bytes | None = body
        self.closed = False

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        """The body (decoded already: libcurl decodes what it asked for), once."""
        body, self._body = self._body or b"", b""
        return body

    def stream(self, amt: int = 65536, decode_content: bool = True) -> Iterator[bytes]:
        body = self.read()
        for start in range(0, len(body), amt):
            yield body[start : start + amt]

    def release_conn(self) -> None:
        self.closed = True  # the handle went back to its pool when the exchange ended

    def close(self) -> None:
        self.closed = True
