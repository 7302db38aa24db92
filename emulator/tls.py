"""A throwaway certificate authority that issues a certificate per emulated hostname.

Clients trust the emulator through one PEM bundle that holds this CA *and* the system
CAs, so a shell that exported the emulator's settings can still reach PyPI or npm through
the proxy (which tunnels every host it does not emulate).
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import certifi
import trustme


class CertificateAuthority:
    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="cmk-rotation local emulator")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def write_bundle(self, path: Path) -> Path:
        """Write the CA followed by certifi's public CAs; return the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        system_cas = Path(certifi.where()).read_bytes()
        path.write_bytes(self._ca.cert_pem.bytes() + b"\n" + system_cas)
        return path

    def server_context(self, hostname: str) -> ssl.SSLContext:
        """A server-side context whose certificate is valid for ``hostname``.

        The context picks a fresh certificate for the SNI name the client sends, so one
        listener can answer for any number of vault hostnames.
        """
        context = self._context_for(hostname)
        context.sni_callback = self._on_sni
        return context

    def _on_sni(self, sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name:
            sock.context = self._context_for(server_name)

    def _context_for(self, hostname: str) -> ssl.SSLContext:
        hostname = hostname.lower()
        with self._lock:
            context = self._contexts.get(hostname)
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                self._ca.issue_cert(hostname).configure_cert(context)
                context.sni_callback = self._on_sni
                self._contexts[hostname] = context
            return context
