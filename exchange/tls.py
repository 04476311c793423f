"""Serving over mutual TLS, and handing the verified client certificate to the app.

uvicorn checks the client certificate against the platform CA during the handshake but
does not pass it on. This protocol class adds it to each request's scope as the ASGI
TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``), which is where
`exchange.identity` reads it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _peer_pem(transport: asyncio.BaseTransport) -> str | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der) if der else None


def _with_client_cert(protocol: Any, transport: asyncio.BaseTransport) -> None:
    pem = _peer_pem(transport)
    if pem is None:
        return
    tls = {"client_cert_chain": [pem], "client_cert_name": None, "client_cert_error": None}
    inner = protocol.app

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["tls"] = tls
        await inner(scope, receive, send)

    protocol.app = app


class MutualTlsHttpTools(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _with_client_cert(self, transport)


class MutualTlsH11(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _with_client_cert(self, transport)
