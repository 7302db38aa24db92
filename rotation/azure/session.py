"""The requests session every SDK client's transport shares, and what it keeps between requests
so that a request does not work out again what cannot have changed (the environment's proxy and
CA bundle for an origin; one verifying TLS context per CA bundle)."""

from __future__ import annotations

import os
import ssl
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import DEFAULT_CA_BUNDLE_PATH
from requests.sessions import merge_setting
from urllib3.util.ssl_ import create_urllib3_context

if TYPE_CHECKING:
    from requests.sessions import _Settings


# What requests reads from the environment to choose a proxy and a CA bundle for a URL.
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


class EnvironmentOnceSession(requests.Session):
    """requests works out each request's proxy and CA bundle from the environment again (urllib
    walks every variable, twice), and looks for a netrc file on disk: a tenth of a request's CPU
    in a Functions host's environment. Here requests' own look-ups are off (`trust_env`) and the
    session reads proxies and the CA bundle itself, as requests would (`from_environment`), kept
    per origin and the values of the variables it reads. netrc is never read: a netrc entry for
    an Azure host would replace the request's bearer token with Basic credentials."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.from_environment = True  # False: nothing from the environment, as trust_env=False
        self._settings: dict[tuple[Any, ...], _Settings] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        if not self.from_environment:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if proxies:  # proxies given for this request: merged with the environment's each time
            return self._from_environment(url, dict(proxies), stream, verify, cert)
        scheme, _, rest = str(url).partition("://")
        key: tuple[Any, ...] = (scheme, rest.split("/", 1)[0], stream, verify, cert, *self.proxies.items())
        key += tuple(os.environ.get(name) for name in _ENVIRONMENT)
        settings = self._settings.get(key)
        if settings is None:
            settings = self._from_environment(url, {}, stream, verify, cert)
            if len(self._settings) >= 64:  # a handful of origins in practice; never unbounded
                self._settings.clear()
            self._settings[key] = settings
        fresh = settings.copy()  # the caller's to change
        fresh["proxies"] = dict(settings["proxies"])
        return fresh

    def _from_environment(
        self, url: str, proxies: dict[str, str], stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        """requests' merge_environment_settings with trust_env on (requests 2.32-2.34)."""
        found = requests.sessions.get_environ_proxies(url, no_proxy=proxies.get("no_proxy"))
        for scheme, proxy in found.items():
            proxies.setdefault(scheme, proxy)
        if verify is True or verify is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


class SharedContextAdapter(requests.adapters.HTTPAdapter):
    """Every new TLS connection of a pool that verifies against a CA bundle file (certifi's, or
    `REQUESTS_CA_BUNDLE`'s) gets a new SSL context from urllib3 with the bundle loaded into it:
    20 ms of CPU for a bundle of 118 CAs. Here the pools share one verifying context per bundle
    file (and its modification time), made the way urllib3 makes its own. requests still decides
    whether and against what to verify; urllib3 still sets CERT_REQUIRED and checks the host name.


    Per request, requests looks up the pool (parsing the URL and the proxy's, building urllib3's
    pool key, checking the bundle file exists and is no directory) and sets it up again (the
    same checks): here the pool is kept per origin, TLS settings and proxies, and a pool already
    set up for the same settings and bundle file (its modification time: one stat) is not set up
    again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._contexts: dict[tuple[str, int], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._set_up: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()
        self._pools: dict[tuple[Any, ...], Any] = {}

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: str | tuple[str, str] | None = None,
    ) -> Any:  # urllib3's connection pool
        scheme, _, rest = str(request.url).partition("://")
        key = (scheme, rest.split("/", 1)[0], verify, cert, *sorted((proxies or {}).items()))
        pool = self._pools.get(key)  # the key holds the whole authority, and more
        if pool is None or pool.pool is None:  # none yet, or closed (the pool manager let it go)
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            if len(self._pools) >= 64:  # a handful of origins in practice; never unbounded
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def close(self) -> None:
        """Closes the kept pools too (urllib3's pool manager lets its pools go without closing them)."""
        pools, self._pools = list(self._pools.values()), {}
        super().close()
        for pool in pools:
            pool.close()

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        stamp = _bundle_stamp(url, verify, cert)
        if stamp is not None and self._set_up.get(conn) == stamp:
            return  # set up for these settings and this very bundle file
        super().cert_verify(conn, url, verify, cert)
        bundle = getattr(conn, "ca_certs", None)
        if bundle and conn.cert_reqs == "CERT_REQUIRED" and not getattr(conn, "ca_cert_dir", None):
            conn.conn_kw["ssl_context"] = self._context(bundle)
            conn.ca_certs = None  # in the context already: urllib3 would load the file again per connection
        if stamp is not None:
            self._set_up[conn] = stamp

    def _context(self, bundle: str) -> ssl.SSLContext:
        key = (bundle, os.stat(bundle).st_mtime_ns)
        with self._lock:
            context = self._contexts.get(key)
            if context is None:
                context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                context.load_verify_locations(cafile=bundle)
                self._contexts = {k: v for k, v in self._contexts.items() if k[0] != bundle}
                self._contexts[key] = context
        return context


def _bundle_stamp(url: str, verify: Any, cert: Any) -> tuple[Any, ...] | None:
    """What requests' TLS set-up of a pool depends on, the bundle file's modification time
    included; None when there is no bundle to check (no https, no verifying, no file)."""
    if not verify or url[:6].lower() != "https:":
        return None
    try:
        changed = os.stat(verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH).st_mtime_ns
    except OSError:
        return None  # requests' own check raises its error
    return (verify, cert, changed)


def shared_session(pool_size: int) -> requests.Session:
    """The one session every client's transport shares: `pool_size` connections a host."""
    session = EnvironmentOnceSession()
    adapter = SharedContextAdapter(pool_connections=16, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
