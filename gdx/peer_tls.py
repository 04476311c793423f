"""Serving over TLS with client certificates, and handing the verified one to the app.

uvicorn checks a client certificate against the CA during the handshake but does not pass it
on. These protocol classes add it to each request's scope as the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``), where the central exchange
(exchange.identity) and the front-end agent's health port (front_end_node.health) read it.
They also keep a deadline for a request's headers, which uvicorn lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref
from asyncio import selector_events, sslproto
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
import uvicorn
from cryptography import x509
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


# A refused client certificate -----------------------------------------------------------------
#
# When the handshake fails on the client's certificate (another CA, expired, not yet valid, the
# wrong key usage), OpenSSL writes a TLS alert that says why. asyncio's TLS protocol then closes
# the socket at once without sending it, and with the client's data unread, so the client sees a
# bare reset and cannot tell why. AlertingEventLoop (uvicorn's `loop=` setting) sends the alert,
# keeps reading for a moment so that the close is no reset, and logs the refusal with the
# certificate's subject (seen by remember_client_certificate, the context's message callback)
# and the reason. It leans on asyncio's TLS protocol (Python 3.11's; the project's machines and
# images run Debian 12's Python 3.11), and is checked by tests/exchange/test_identity.py.

ALERT_GRACE_S = 1.0
_certificates: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def remember_client_certificate(
    conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
) -> None:
    """An SSLContext message callback: keeps the Certificate message a client sends, so that a
    certificate the handshake refuses can still be named in the log."""
    if direction == "read" and msg_type == ssl._TLSMessageType.CERTIFICATE:  # type: ignore[attr-defined]
        with contextlib.suppress(TypeError):
            _certificates[conn] = bytes(data)


def _first_certificate(message: bytes, tls13: bool) -> x509.Certificate | None:
    """The first certificate of a TLS Certificate handshake message (RFC 8446 4.4.2, RFC 5246 7.4.2)."""
    at = 4  # the handshake header: type and length
    if tls13:
        at += 1 + message[at]  # certificate_request_context
    at += 3  # the list's length
    if len(message) < at + 3:
        return None
    length = int.from_bytes(message[at : at + 3], "big")
    try:
        return x509.load_der_x509_certificate(message[at + 3 : at + 3 + length])
    except ValueError:
        return None


def _subject_of(ssl_object: Any) -> str:
    message = _certificates.pop(ssl_object, None)
    if message is None:
        return "(none sent)"
    try:
        tls13 = ssl_object.version() == "TLSv1.3"
    except (ValueError, AttributeError):
        tls13 = True
    cert = _first_certificate(message, tls13) or _first_certificate(message, not tls13)
    return cert.subject.rfc4514_string() if cert is not None else "(unreadable)"


class _AlertingSSLProtocol(sslproto.SSLProtocol):
    _refused_at: float | None = None

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is None or self._refused_at is not None or self._transport is None:
            super()._on_handshake_complete(handshake_exc)
            return
        self._refused_at = self._loop.time()
        reason = getattr(handshake_exc, "verify_message", None) or getattr(handshake_exc, "reason", None)
        peer = self._transport.get_extra_info("peername")
        log.warning(
            "a client's TLS handshake was refused",
            peer=str(peer[0]) if peer else None,
            subject=_subject_of(self._sslobj),  # type: ignore[attr-defined]
            reason=reason or str(handshake_exc),
        )
        with contextlib.suppress(Exception):
            self._process_outgoing()  # type: ignore[attr-defined]
        # Unwrapped, the protocol reads and drops what the client still sends; the connection
        # closes once the client, having read the alert, hangs up, or after the grace period.
        self._set_state(sslproto.SSLProtocolState.UNWRAPPED)  # type: ignore[attr-defined]
        self._loop.call_later(ALERT_GRACE_S, super()._on_handshake_complete, handshake_exc)


class AlertingEventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop, whose TLS servers send the alert of a refused client certificate."""

    def _make_ssl_transport(
        self,
        rawsock: Any,
        protocol: Any,
        sslcontext: Any,
        waiter: Any = None,
        *,
        server_side: bool = False,
        server_hostname: Any = None,
        extra: Any = None,
        server: Any = None,
        ssl_handshake_timeout: Any = None,
        ssl_shutdown_timeout: Any = None,
    ) -> Any:
        ssl_protocol = _AlertingSSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        selector_events._SelectorSocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)  # type: ignore[attr-defined]
        return ssl_protocol._app_transport


class TlsServerConfig(uvicorn.Config):
    """uvicorn's settings, with the message callback that names a refused certificate set on the
    TLS context it builds. Pair it with ``loop=ALERTING_LOOP``."""

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl._msg_callback = remember_client_certificate  # type: ignore[attr-defined]


ALERTING_LOOP = f"{__name__}:AlertingEventLoop"
