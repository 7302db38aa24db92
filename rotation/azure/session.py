"""The connections every SDK client's transport shares (transport.py): urllib3 pools kept per
origin, with what a request would otherwise work out again that cannot have changed (the
environment's proxy for an origin; one verifying TLS context per CA bundle file).

The environment is read as requests reads it (HTTPS_PROXY/NO_PROXY and their kin,
REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), once per origin and the values of those variables. netrc is
never read: a netrc entry for an Azure host would replace a request's bearer token.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
from urllib3 import HTTPConnectionPool, PoolManager, ProxyManager
from urllib3.util import make_headers
from urllib3.util.ssl_ import create_urllib3_context

# What requests read from the environment to choose a proxy and a CA bundle for a URL.
_ENVIRONMENT = (
    *(
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ),
    *("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "REQUEST_METHOD"),
)
_KEPT = 64  # routes and contexts: a handful of origins in practice; never unbounded

Verify = bool | str | None
Cert = str | tuple[str, str] | None
# Where a request goes: a pool (the URL's path is sent), or a forwarding proxy's manager (the
# whole URL is sent: plain http through a proxy).
Opener = HTTPConnectionPool | ProxyManager


def proxy_for(url: str) -> str | None:
    """The proxy requests would choose for `url` from the environment (its own rules: NO_PROXY
    with hosts, domains, ports and CIDR ranges; the most specific of scheme://host, scheme,
    all://host, all), or None."""
    from requests.utils import get_environ_proxies, select_proxy  # once per origin: not at import

    return select_proxy(url, get_environ_proxies(url))


def environment() -> tuple[str | None, ...]:
    """The values of the variables a route depends on: a changed one means a new route."""
    return tuple(map(os.environ.get, _ENVIRONMENT))


def ca_bundle(verify: Verify) -> str | None:
    """The CA bundle to verify against, as requests chose it: the environment's for `verify`
    True, the given path, or certifi's; None: no verifying."""
    if verify is False:
        return None
    if verify is True or verify is None:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    return verify


class Contexts:
    """One SSL context per CA bundle file (and its modification time) and client certificate:
    urllib3 would load a bundle of 118 CAs into a new context per connection (20 ms of CPU)."""

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def context(self, bundle: str | None, cert: Cert) -> ssl.SSLContext:
        modified = stamp(bundle)
        key = (bundle, modified, cert)
        context = self._kept.get(key)
        if context is None:
            with self._lock:
                context = self._kept.get(key) or self._made(bundle, cert)
                self._kept = {k: v for k, v in self._kept.items() if k[0] != bundle or k[2] != cert}
                if len(self._kept) >= _KEPT:
                    self._kept.clear()
                self._kept[key] = context
        return context

    @staticmethod
    def _made(bundle: str | None, cert: Cert) -> ssl.SSLContext:
        if bundle is None:  # asked for: no verifying
            context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
        else:
            context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            if os.path.isdir(bundle):
                context.load_verify_locations(capath=bundle)
            else:
                context.load_verify_locations(cafile=bundle)
        if cert is not None:
            certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
            context.load_cert_chain(certfile, keyfile)
        return context


def stamp(bundle: str | None) -> int | None:
    """The bundle file's modification time; OSError naming it when it is missing."""
    if bundle is None:
        return None
    try:
        return os.stat(bundle).st_mtime_ns
    except OSError as exc:  # chosen before any connection is made, as requests did
        raise OSError(f"Could not find a suitable TLS CA certificate bundle, invalid path: {bundle}") from exc


class Connections:
    """urllib3 pools, `pool_size` connections each (block=False: a burst past it opens
    connections that are not kept), looked up per origin, TLS settings and the environment's
    values. Safe to share between threads."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self.contexts = Contexts()
        self._routes: dict[tuple[Any, ...], tuple[Opener, bool]] = {}
        self._managers: dict[tuple[Any, ...], PoolManager] = {}
        self._lock = threading.Lock()

    def route(self, scheme: str, authority: str, verify: Verify, cert: Cert) -> tuple[Opener, bool]:
        """Where a request to scheme://authority goes, and whether it sends the whole URL. The
        CA bundle's modification time is checked (one stat): a replaced bundle is loaded again."""
        bundle = ca_bundle(verify) if scheme == "https" else None
        key = (scheme, authority, bundle, stamp(bundle), cert, *environment())
        found = self._routes.get(key)
        if found is not None and (isinstance(found[0], ProxyManager) or found[0].pool is not None):
            return found  # (a pool closed meanwhile is made again)
        with self._lock:
            found = self._new_route(scheme, authority, bundle, cert)
            if len(self._routes) >= _KEPT:
                self._forget_routes()
            self._routes[key] = found
        return found

    def _new_route(self, scheme: str, authority: str, bundle: str | None, cert: Cert) -> tuple[Opener, bool]:
        url = f"{scheme}://{authority}/"
        parts = urlsplit(url)
        proxy = proxy_for(url)
        tls = {"ssl_context": self.contexts.context(bundle, cert)} if scheme == "https" else {}
        manager = self._manager(proxy, tls)
        if isinstance(manager, ProxyManager) and scheme == "http":
            return manager, True  # forwarded: the proxy gets the whole URL
        pool = manager.connection_from_host(parts.hostname, parts.port, scheme)
        return pool, False

    def _manager(self, proxy: str | None, tls: dict[str, Any]) -> PoolManager:
        key = (proxy, *tls.values())
        manager = self._managers.get(key)
        if manager is None:
            kw: dict[str, Any] = {"maxsize": self.pool_size, "block": False, **tls}
            if proxy is None:
                manager = PoolManager(num_pools=16, **kw)
            else:
                manager = ProxyManager(proxy, num_pools=16, proxy_headers=_proxy_auth(proxy), **kw)
            if len(self._managers) >= _KEPT:
                self._close_managers()
            self._managers[key] = manager
        return manager

    def _forget_routes(self) -> None:
        """Routes forgotten, their pools closed (urllib3's managers let pools go unclosed): a
        connection in use is closed when it is done, not pooled again."""
        routes, self._routes = list(self._routes.values()), {}
        for opener, _ in routes:
            if isinstance(opener, HTTPConnectionPool):
                opener.close()

    def _close_managers(self) -> None:
        managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            manager.clear()

    def close(self) -> None:
        with self._lock:
            self._forget_routes()
            self._close_managers()


def _proxy_auth(proxy: str) -> dict[str, str]:
    """Proxy-Authorization for a proxy URL with credentials in it, as requests sent it."""
    parts = urlsplit(proxy)
    if not parts.username:
        return {}
    return make_headers(proxy_basic_auth=f"{unquote(parts.username)}:{unquote(parts.password or '')}")
