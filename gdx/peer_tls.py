"""Serving over TLS with client certificates, and handing the verified one to the app.

uvicorn checks a client certificate against the CA during the handshake but does not pass it
on. These protocol classes add it to each request's scope as the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``), where the central exchange
(exchange.identity) and the front-end agent's health port (front_end_node.health) read it.
They also keep a deadline for a request's headers, which uvicorn lacks.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("gdx.tls")

# From a connection's start, or a request's first byte, to the end of its headers.
HEADERS_S = 10.0


def peer_certificate_pem(scope: MutableMapping[str, Any]) -> str | None:
    """The verified client certificate of a request, as PEM; None when the caller sent none."""
    chain = (scope.get("extensions", {}).get("tls") or {}).get("client_cert_chain") or []
    return str(chain[0]) if chain else None


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


def _timeout_response(headers_s: float) -> bytes:
    message = f"the request's headers took longer than {headers_s:g} s"
    body = orjson.dumps({"error": "request_timeout", "message": message, "details": []})
    head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


class PeerCertHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the client certificate in the scope and a deadline
    for a request's headers: from the connection's start (after the TLS handshake) or the
    request's first byte to the end of its headers. uvicorn has none: a client that sends
    half a request line held the connection for ever. (The exchange keeps a deadline for bodies
    too: exchange.limits.)"""

    headers_s = HEADERS_S
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _with_client_cert(self, transport)
        self._arm_headers_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_headers_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_headers_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_headers_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Between requests the keep-alive timeout applies, until the next one begins.
        self._disarm_headers_deadline()

    def _arm_headers_deadline(self) -> None:
        if self._headers_deadline is None:
            self._headers_deadline = self.loop.call_later(self.headers_s, self._headers_too_slow)

    def _disarm_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
            self._headers_deadline = None

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if self.transport.is_closing():
            return
        self.headers_timed_out()
        log.warning("a request's headers did not arrive in time: connection closed", client=self.client)
        self.transport.write(_timeout_response(self.headers_s))
        self.transport.close()

    def headers_timed_out(self) -> None:
        """Called before the connection is answered and closed (a server counts it here)."""


class PeerCertH11(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _with_client_cert(self, transport)
