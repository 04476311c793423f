"""The exchange's own Prometheus figures."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
ERRORS = Counter("gdx_exchange_errors_total", "Requests that failed on the server side (5xx)", ["route"])
