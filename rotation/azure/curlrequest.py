"""A request's every option on a (reset) libcurl handle, for the curl transport (curl.py): what it
sends (method, body, the headers urllib3 sent: transport.outgoing) and the trust boundary the
urllib3 transport keeps (session.py's rules for proxies and CA bundles).

libcurl is told everything and reads nothing itself: no redirects followed (azure-core's
RedirectPolicy decides: links.py), https only (http only for an http URL, as urllib3 allowed), no
netrc (an entry for an Azure host would replace the bearer token), no cookies, the proxy the
environment names by requests' rules (NO_PROXY included) or explicitly none, no
`Expect: 100-continue` (a wait of a second before every PUT body).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pycurl

from rotation.azure.session import Cert, Verify, ca_bundle, environment, proxy_for, stamp
from rotation.azure.transport import outgoing

_ENCODINGS = "gzip, deflate"  # what urllib3 asked for and decoded; libcurl decodes it too
_KEPT = 64  # origins: a handful in practice; never unbounded
# Methods that carry a body: sent with Content-Length 0 when the request has none (as urllib3 did;
# ARM answers 411 to a POST without a length).
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
# http.client's rules, which the urllib3 transport keeps: libcurl sends a header line as given, so
# a line break in a value (an If-Match holding an ETag an answer chose) would add a header.
_LEGAL_NAME = re.compile(r"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE = re.compile(r"[\r\n\0]").search


class Routes:
    """The proxy for each origin (requests' rules over the environment, worked out once per
    origin and the environment's values) and whether a CA bundle path is a directory: no
    per-request environment or filesystem look-ups (the issue's profile: 7.6 % in os.path checks).
    The environment's proxy variables are read again at most every `recheck` seconds (reading the
    eleven of them costs a tenth of what libcurl spends on a call); a change is seen by then."""

    def __init__(self, recheck: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._proxies: dict[tuple[Any, ...], str] = {}
        self._directories: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._recheck, self._clock = recheck, clock
        self._environment: tuple[str | None, ...] = environment()
        self._read_at = clock()

    def proxy(self, scheme: str, authority: str) -> str:
        """The proxy URL for scheme://authority, or "" (none: libcurl then reads no environment)."""
        now = self._clock()
        if now - self._read_at >= self._recheck:
            self._environment, self._read_at = environment(), now
        key = (scheme, authority, *self._environment)
        found = self._proxies.get(key)
        if found is None:
            found = proxy_for(f"{scheme}://{authority}/") or ""
            with self._lock:
                if len(self._proxies) >= _KEPT:
                    self._proxies.clear()
                self._proxies[key] = found
        return found

    def is_directory(self, bundle: str) -> bool:
        """Looked up once a path; a missing bundle is refused before any connection is made, as
        requests (and the urllib3 transport) refused it."""
        found = self._directories.get(bundle)
        if found is None:
            stamp(bundle)
            found = self._directories[bundle] = os.path.isdir(bundle)
        return found


def prepare(
    handle: pycurl.Curl,
    request: Any,
    routes: Routes,
    *,
    verify: Verify,
    cert: Cert,
    timeouts: tuple[float, float],
) -> bool:
    """Set what `request` needs on `handle` (freshly reset: every option starts at its default).
    `timeouts`: (connect, whole exchange) in seconds. True: it goes through a proxy."""
    url: str = request.url
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    handle.setopt(pycurl.URL, url.partition("#")[0])
    allowed = pycurl.PROTO_HTTPS | (pycurl.PROTO_HTTP if scheme == "http" else 0)
    handle.setopt(pycurl.PROTOCOLS, allowed)
    handle.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTPS)
    handle.setopt(pycurl.FOLLOWLOCATION, 0)
    handle.setopt(pycurl.NETRC, pycurl.NETRC_IGNORED)
    handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: threads
    handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    proxy = routes.proxy(scheme, authority)
    handle.setopt(pycurl.PROXY, proxy)
    handle.setopt(pycurl.NOPROXY, "")  # the choice above is the whole rule
    connect, whole = timeouts
    handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(connect * 1000)))
    handle.setopt(pycurl.TIMEOUT_MS, max(1, int(whole * 1000)))
    _tls(handle, routes, verify, cert)
    _method_and_body(handle, request)
    return bool(proxy)


def _tls(handle: pycurl.Curl, routes: Routes, verify: Verify, cert: Cert) -> None:
    """Verify against the bundle requests would choose (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
    certifi), a proxy's TLS too; none at all only when azure-core's connection_verify says so."""
    bundle = ca_bundle(verify)
    if bundle is None:
        for option in (pycurl.SSL_VERIFYPEER, pycurl.SSL_VERIFYHOST, pycurl.PROXY_SSL_VERIFYPEER):
            handle.setopt(option, 0)
    else:
        directory = routes.is_directory(bundle)
        handle.setopt(pycurl.CAPATH if directory else pycurl.CAINFO, bundle)
        handle.setopt(pycurl.PROXY_CAPATH if directory else pycurl.PROXY_CAINFO, bundle)
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        handle.setopt(pycurl.SSLCERT, certfile)
        if keyfile:
            handle.setopt(pycurl.SSLKEY, keyfile)


def _method_and_body(handle: pycurl.Curl, request: Any) -> None:
    body, headers = outgoing(request)
    method = request.method.upper()
    encodings = _ENCODINGS
    lines = ["Expect:"]  # an empty value removes the header libcurl would add
    for name, value in headers.items():
        _check_header(name, str(value))
        lower = name.lower()
        if lower == "accept-encoding":
            encodings = value  # libcurl sends it, and decodes what it understands of it
        else:  # "Name;" sends a header with no value ("Name:" would remove it)
            lines.append(f"{name}: {value}" if value else f"{name};")
    handle.setopt(pycurl.ACCEPT_ENCODING, encodings)
    data = _bytes(body)
    if method == "HEAD":
        handle.setopt(pycurl.NOBODY, 1)
    elif data is not None or method in _BODY_METHODS:
        if not any(name.lower() == "content-type" for name in headers):
            lines.append("Content-Type:")  # libcurl would add a form's; urllib3 sent none
        handle.setopt(pycurl.POSTFIELDSIZE_LARGE, len(data or b""))
        handle.setopt(pycurl.POSTFIELDS, data or b"")
        handle.setopt(pycurl.CUSTOMREQUEST, method)
    elif method != "GET":
        handle.setopt(pycurl.CUSTOMREQUEST, method)
    handle.setopt(pycurl.HTTPHEADER, lines)


def _check_header(name: str, value: str) -> None:
    if not _LEGAL_NAME(name):
        raise ValueError(f"Invalid header name {name!r}")
    if _ILLEGAL_VALUE(value):
        raise ValueError(f"Invalid header value for {name!r}: a line break or NUL")


def _bytes(body: Any) -> bytes | None:
    """The body as bytes: Key Vault and ARM send JSON text; a file or an iterable is read whole."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if hasattr(body, "read"):
        read = body.read()
        return read.encode("utf-8") if isinstance(read, str) else bytes(read)
    return b"".join(part.encode("utf-8") if isinstance(part, str) else bytes(part) for part in body)
