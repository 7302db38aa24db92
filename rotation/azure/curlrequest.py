"""A request's every option on a libcurl handle (reset unless it carries the same route's options
from a plain GET: `prepare`), for the curl transport (curl.py): what it sends (method, body, the
headers urllib3 sent: transport.outgoing) and the trust boundary the urllib3 transport keeps
(session.py's rules for proxies and CA bundles).

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
from collections.abc import Callable, Mapping
from typing import Any

import pycurl

from rotation.azure.curlhandles import Handle
from rotation.azure.session import Cert, Verify, ca_bundle, environment, proxy_for, stamp
from rotation.azure.transport import outgoing

_ENCODINGS = "gzip, deflate"  # what urllib3 asked for and decoded; libcurl decodes it too
_KEPT = 64  # origins, header names: a handful in practice; never unbounded
# Methods that carry a body: sent with Content-Length 0 when the request has none (as urllib3 did;
# ARM answers 411 to a POST without a length).
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
# http.client's rules, which the urllib3 transport keeps: libcurl sends a header line as given, so
# a line break in a value (an If-Match holding an ETag an answer chose) would add a header.
_LEGAL_NAME = re.compile(r"[^:\s][^:\r\n]*").fullmatch
_LEGAL_NAMES: set[str] = set()  # names found legal already


class Routes:
    """The proxy for each origin (requests' rules over the environment, worked out once per
    origin and the environment's values), the CA bundle requests would choose and whether its
    path is a directory: no per-request environment or filesystem look-ups (the issue's profile:
    7.6 % in os.path checks). The environment's proxy and bundle variables are read again at most
    every `recheck` seconds (reading the eleven of them costs a tenth of what libcurl spends on a
    call); a change is seen by then."""

    def __init__(self, recheck: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._proxies: dict[tuple[Any, ...], str] = {}
        self._directories: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._recheck, self._clock = recheck, clock
        self._environment: tuple[str | None, ...] = environment()
        self._read_at = clock()
        self._default: tuple[tuple[str | None, ...] | None, str | None] = (None, None)

    def _current(self) -> tuple[str | None, ...]:
        now = self._clock()
        if now - self._read_at >= self._recheck:
            self._environment, self._read_at = environment(), now
        return self._environment

    def proxy(self, scheme: str, authority: str) -> str:
        """The proxy URL for scheme://authority, or "" (none: libcurl then reads no environment)."""
        key = (scheme, authority, *self._current())
        found = self._proxies.get(key)
        if found is None:
            found = proxy_for(f"{scheme}://{authority}/") or ""
            with self._lock:
                if len(self._proxies) >= _KEPT:
                    self._proxies.clear()
                self._proxies[key] = found
        return found

    def bundle(self, verify: Verify) -> str | None:
        """session.ca_bundle's choice, from the environment as last read."""
        if verify is True or verify is None:
            current = self._current()
            if self._default[0] is not current:  # the environment was read again
                self._default = (current, ca_bundle(True))
            return self._default[1]
        return ca_bundle(verify)

    def is_directory(self, bundle: str) -> bool:
        """Looked up once a path; a missing bundle is refused before any connection is made, as
        requests (and the urllib3 transport) refused it."""
        found = self._directories.get(bundle)
        if found is None:
            stamp(bundle)
            found = self._directories[bundle] = os.path.isdir(bundle)
        return found


def prepare(
    handle: Handle,
    request: Any,
    routes: Routes,
    *,
    verify: Verify,
    cert: Cert,
    timeouts: tuple[float, float],
) -> bool:
    """Set what `request` needs on `handle`. `timeouts`: (connect, whole exchange) in seconds.
    True: it goes through a proxy.

    The options that depend only on the route (protocols, proxy, TLS, callbacks) stay on the
    handle from its previous request when they are the same (`handle.settled`) and that request
    left nothing else behind (a plain GET: what every request sets anew is all it set); otherwise
    the handle is reset (every option at its default) and they are set again."""
    url: str = request.url
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    proxy = routes.proxy(scheme, authority)
    bundle = routes.bundle(verify)
    settled = (scheme == "http", proxy, bundle, cert)
    curl = handle.curl
    if handle.settled != settled:
        handle.settled = None  # until every option below is set
        curl.reset()
        _route(curl, scheme == "http", proxy)
        _tls(curl, routes, bundle, cert)
        gathered = handle.gathered
        curl.setopt(pycurl.HEADERFUNCTION, gathered.lines.append)
        curl.setopt(pycurl.WRITEFUNCTION, gathered.write)
        curl.setopt(pycurl.PREREQFUNCTION, gathered.prerequest)
    curl.setopt(pycurl.URL, url.partition("#")[0])
    connect, whole = timeouts
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(connect * 1000)))
    curl.setopt(pycurl.TIMEOUT_MS, max(1, int(whole * 1000)))
    plain = _method_and_body(curl, request)
    handle.settled = settled if plain else None  # a write's method and body are reset next time
    return bool(proxy)


def _route(curl: pycurl.Curl, http: bool, proxy: str) -> None:
    curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTPS | (pycurl.PROTO_HTTP if http else 0))
    curl.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTPS)
    curl.setopt(pycurl.FOLLOWLOCATION, 0)
    curl.setopt(pycurl.NETRC, pycurl.NETRC_IGNORED)
    curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: threads
    curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    curl.setopt(pycurl.PROXY, proxy)
    curl.setopt(pycurl.NOPROXY, "")  # the choice of `proxy` is the whole rule


def _tls(curl: pycurl.Curl, routes: Routes, bundle: str | None, cert: Cert) -> None:
    """Verify against the bundle requests would choose (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
    certifi), a proxy's TLS too; none at all only when azure-core's connection_verify says so."""
    if bundle is None:
        for option in (pycurl.SSL_VERIFYPEER, pycurl.SSL_VERIFYHOST, pycurl.PROXY_SSL_VERIFYPEER):
            curl.setopt(option, 0)
    else:
        directory = routes.is_directory(bundle)
        curl.setopt(pycurl.CAPATH if directory else pycurl.CAINFO, bundle)
        curl.setopt(pycurl.PROXY_CAPATH if directory else pycurl.PROXY_CAINFO, bundle)
    if cert is not None:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        curl.setopt(pycurl.SSLCERT, certfile)
        if keyfile:
            curl.setopt(pycurl.SSLKEY, keyfile)


def _method_and_body(curl: pycurl.Curl, request: Any) -> bool:
    """The method, body and headers; True for a GET without a body (nothing left to undo)."""
    body, headers = outgoing(request)
    method = request.method.upper()
    lines, encodings, typed = _header_lines(headers)
    curl.setopt(pycurl.ACCEPT_ENCODING, encodings)
    data = _bytes(body)
    plain = False
    if method == "HEAD":
        curl.setopt(pycurl.NOBODY, 1)
    elif data is not None or method in _BODY_METHODS:
        if not typed:
            lines.append("Content-Type:")  # libcurl would add a form's; urllib3 sent none
        curl.setopt(pycurl.POSTFIELDSIZE_LARGE, len(data or b""))
        curl.setopt(pycurl.POSTFIELDS, data or b"")
        curl.setopt(pycurl.CUSTOMREQUEST, method)
    elif method != "GET":
        curl.setopt(pycurl.CUSTOMREQUEST, method)
    else:
        plain = True
    curl.setopt(pycurl.HTTPHEADER, lines)
    return plain


def _header_lines(headers: Mapping[str, Any]) -> tuple[list[str], str, bool]:
    """The header lines libcurl sends as given, the encodings to ask for (libcurl sends that
    header and decodes what it understands of the answer), and whether a Content-Type is set."""
    encodings = _ENCODINGS
    typed = False
    lines = ["Expect:"]  # an empty value removes the header libcurl would add
    for name, value in headers.items():
        if name not in _LEGAL_NAMES:
            _check_name(name)
        lower = name.lower()
        if lower == "accept-encoding":
            encodings = value
            continue
        typed = typed or lower == "content-type"
        lines.append(f"{name}: {value}" if value else f"{name};")  # "Name;": a header with no value
    if _splits("".join(lines)):
        raise ValueError(f"Invalid header value for {_split_by(headers)!r}: a line break or NUL")
    return lines, encodings, typed


def _check_name(name: str) -> None:
    if not _LEGAL_NAME(name):
        raise ValueError(f"Invalid header name {name!r}")
    if len(_LEGAL_NAMES) < _KEPT:  # a handful of names in practice; never unbounded
        _LEGAL_NAMES.add(name)


def _splits(text: str) -> bool:
    # Three substring searches: a regex's character class costs 20 instructions a character over
    # a bearer token's 2 kB.
    return "\n" in text or "\r" in text or "\0" in text


def _split_by(headers: Mapping[str, Any]) -> str:
    """The (first) header whose name or value holds a line break or NUL."""
    return next(name for name, value in headers.items() if _splits(f"{name}{value}"))


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
