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

import orjson
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exchange import metrics
from exchange.limits import DEFAULT_HEADERS_S

log = structlog.get_logger("gdx.exchange")


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


def _timeout_response() -> bytes:
    body = orjson.dumps(
        {
            "error": "request_timeout",
            "message": f"the request's headers took longer than {DEFAULT_HEADERS_S:g} s",
            "details": [],
        }
    )
    head = f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


class MutualTlsHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the client certificate in the scope and a deadline
    for a request's headers: from the connection's start (after the TLS handshake) or the
    request's first byte to the end of its headers. uvicorn has none: a client that sends
    half a request line held the connection for ever. The body's deadline is exchange.limits'."""

    headers_s = DEFAULT_HEADERS_S
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
        metrics.HEADER_TIMEOUTS.inc()
        log.warning("a request's headers did not arrive in time: connection closed", client=self.client)
        self.transport.write(_timeout_response())
        self.transport.close()


class MutualTlsH11(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _with_client_cert(self, transport)
