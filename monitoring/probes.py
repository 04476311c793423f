"""One probe of one front-end node: TCP connect, TLS handshake (the platform CA must vouch
for a certificate naming the department), then /healthz on the same connection.

Every step is bounded by the probe's timeout; a failure is a result ("tls: certificate names
zjg-wjw"), never an exception that would stop the cycle. Plain asyncio streams rather than an
HTTP client: one connection per probe, and the time of each step is known.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from cryptography import x509

from gdx.pki import PkiError, identity_of
from monitoring.settings import Target


@dataclass
class ProbeResult:
    department: str
    reachable: bool = False  # TCP connect
    tls_ok: bool = False  # handshake, CA-verified, names the department
    answered: bool = False  # /healthz parsed
    error: str = ""
    seconds: float = 0.0
    certificate_expiry: float | None = None  # Unix time, from the handshake
    clock_offset_s: float | None = None  # node clock minus ours
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.answered


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    # A node's certificate names its department, not its address; the probe checks the name itself.
    context.check_hostname = False
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


class HttpError(Exception):
    pass


async def https_get(
    target: Target, path: str, context: ssl.SSLContext, *, timeout: float, params: dict[str, Any] | None = None
) -> Any:
    """GET a JSON document from a node's health port (used for tallies; probes use probe())."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(target.address, target.port, ssl=context)
        try:
            return await _get_json(reader, writer, target, path + (f"?{urlencode(params)}" if params else ""))
        finally:
            writer.close()


async def probe(target: Target, context: ssl.SSLContext, timeout: float) -> ProbeResult:
    result = ProbeResult(target.department)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await _probe(target, context, result)
    except TimeoutError:
        stage = "http" if result.tls_ok else "tls" if result.reachable else "tcp"
        result.error = result.error or f"{stage}: no answer within {timeout:g} s"
    except (OSError, ssl.SSLError, HttpError, ValueError) as exc:
        result.error = result.error or _describe(exc)
    result.seconds = time.monotonic() - started
    return result


async def _probe(target: Target, context: ssl.SSLContext, result: ProbeResult) -> None:
    stage = "tcp"
    try:
        reader, writer = await asyncio.open_connection(target.address, target.port)
        result.reachable = True
        stage = "tls"
        await writer.start_tls(context, server_hostname=target.address)
    except (OSError, ssl.SSLError) as exc:
        result.error = f"{stage}: {_describe(exc)}"
        raise
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        try:
            named = identity_of(cert).name
        except PkiError as exc:
            named = f"({exc})"
        if named != target.department:
            result.error = f"tls: the certificate names {named}, not {target.department}"
            return
        result.tls_ok = True
        result.certificate_expiry = cert.not_valid_after_utc.timestamp()
        sent = time.time()
        result.health = await _get_json(reader, writer, target, "/healthz", accept=(200, 503))
        received = time.time()
        result.answered = True
        node_time = result.health.get("time")
        if isinstance(node_time, int | float):
            result.clock_offset_s = node_time - (sent + received) / 2
    finally:
        writer.close()


async def _get_json(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: Target,
    path: str,
    accept: tuple[int, ...] = (200,),
) -> Any:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {target.address}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read(-1)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HttpError(f"http: not an HTTP answer ({status_line[:60]!r})")
    status = int(parts[1])
    if status not in accept:
        detail = body[:200].decode(errors="replace")
        raise HttpError(f"http: {path.split('?')[0]} answered {status}: {detail}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return orjson.loads(body)


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
