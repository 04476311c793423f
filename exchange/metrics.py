"""The exchange's own Prometheus figures."""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("gdx_exchange_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "gdx_exchange_request_seconds",
    "Time to answer a request",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCHES = Counter("gdx_exchange_batches_total", "Pushed batches by outcome", ["outcome"])
CHANGES = Counter("gdx_exchange_changes_total", "Pushed changes by result", ["result"])
PULLED = Counter("gdx_exchange_changes_pulled_total", "Changes handed to consumers")
COMPACTED = Counter(
    "gdx_exchange_changes_compacted_total", "Superseded versions removed from the change log after the retention period"
)
INBOX_NOTICES = Counter(
    "gdx_exchange_inbox_notices_total", "Inbox notices posted to departments' webhooks, by outcome", ["outcome"]
)
AUDIT_FAILURES = Counter(
    "gdx_exchange_audit_failures_total", "Refusals answered whose audit entry could not be written (see the log)"
)
CLIENT_DISCONNECTS = Counter(
    "gdx_exchange_client_disconnects_total",
    "Requests whose client went away before the exchange answered (not server errors)",
    ["route"],
)
HEADER_TIMEOUTS = Counter(
    "gdx_exchange_header_timeouts_total", "Connections closed because a request's headers did not arrive in time"
)
ERRORS = Counter("gdx_exchange_errors_total", "Requests that failed on the server side (5xx)", ["route"])

# Set for `gdx exchange serve --workers N` (N > 1) before the workers start: each process then
# writes its figures to files there, and whichever process answers /metrics reports the sum.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """The figures in Prometheus' text format: of every worker process, when there are several."""
    if MULTIPROCESS_DIR_ENV not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


# The status nginx logs for a request its client closed before the answer; never sent.
CLIENT_CLOSED = 499


class RequestMetrics:
    """ASGI middleware counting and timing every request by route.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which runs each request in a task
    group of its own with memory streams between it and the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        disconnected = False
        try:
            await self.app(scope, receive, send_noting_status)
        except ClientDisconnect:
            # Nobody is left to answer: not a server error, and nothing for the log's tracebacks.
            disconnected = True
        finally:
            # The router writes the matched route into the scope on its way in.
            route = getattr(scope.get("route"), "path", "unmatched")
            if disconnected:
                CLIENT_DISCONNECTS.labels(route).inc()
                status = CLIENT_CLOSED
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)
            if status >= 500 and not disconnected:
                ERRORS.labels(route).inc()
