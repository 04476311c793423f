"""How much of a request the exchange reads, and how long it waits for it.

A body is refused with 413 before it is read when its Content-Length says it is too large,
and as soon as it grows past the limit otherwise (a chunked body has no length). A body that
stops arriving is refused with 408 once no byte came for ``idle_s`` or the whole took more
than ``total_s``, so that a client which announces more than it sends cannot hold a worker.
Headers have a deadline of their own, kept by the connection (gdx.peer_tls). Both refusals
answer in the documented shape and are audited, like every other (exchange.refusals).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange import refusals

# The largest batch (gdx.protocol.MAX_BATCH_CHANGES changes of 200 fields) stays well under it.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_BODY_IDLE_S = 15.0
DEFAULT_BODY_TOTAL_S = 120.0


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        mib = limit / (1024 * 1024)
        super().__init__(413, f"the body is larger than {mib:g} MiB; split it (a batch, or a file)")


class BodyTimeout(HTTPException):
    def __init__(self, why: str) -> None:
        super().__init__(408, f"the request body {why}; send it again")


@dataclass(frozen=True)
class LargeBodies:
    """The paths (a regular expression) whose bodies may be larger and take longer."""

    path: str
    max_bytes: int
    total_s: float


class RequestLimits:
    """ASGI middleware: the size and time limits above. The errors are raised where the route
    reads its body, so the exchange's error handlers answer and audit them."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        idle_s: float = DEFAULT_BODY_IDLE_S,
        total_s: float = DEFAULT_BODY_TOTAL_S,
        large: LargeBodies | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.idle_s = idle_s
        self.total_s = total_s
        self.large = large
        self._large_path = re.compile(large.path) if large else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, total_s = self.max_body_bytes, self.total_s
        if self.large is not None and self._large_path and self._large_path.match(scope.get("path", "")):
            max_bytes, total_s = self.large.max_bytes, self.large.total_s
        announced = _content_length(scope)
        if announced is not None and announced > max_bytes:
            # Refused before the route is even chosen: the audit entry names the path.
            error = BodyTooLarge(max_bytes)
            request = Request(scope, receive)
            response = await refusals.refuse(request, 413, "body_too_large", str(error.detail))
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        started = time.monotonic()
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            left = total_s - (time.monotonic() - started)
            try:
                async with asyncio.timeout(min(self.idle_s, max(left, 0.0))):
                    message = await receive()
            except TimeoutError:
                why = f"took longer than {total_s:g} s" if left <= self.idle_s else f"stalled for {self.idle_s:g} s"
                raise BodyTimeout(why) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
