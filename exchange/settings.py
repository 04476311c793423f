"""The exchange's settings, as `gdx exchange serve` gathers them from options or GDX_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exchange.limits import DEFAULT_BODY_IDLE_S, DEFAULT_BODY_TOTAL_S, DEFAULT_MAX_BODY_BYTES
from exchange.retention import DEFAULT_RETENTION_DAYS
from gdx.protocol import UPLOAD_MAX_BYTES, UPLOAD_MAX_ROWS, UPLOAD_MAX_WORKBOOK_ROWS


@dataclass(frozen=True)
class Settings:
    database_url: str
    tls_cert: Path
    tls_key: Path
    ca_cert: Path
    calendar_file: Path | None = None
    pool_min: int = 2
    pool_max: int = 10
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_idle_s: float = DEFAULT_BODY_IDLE_S
    body_total_s: float = DEFAULT_BODY_TOTAL_S
    # Send the TLS alert of a refused client certificate (gdx.peer_tls): asyncio's event loop
    # instead of uvloop, at about 0.6x the push throughput (BENCHMARKS.md). Off where an ingress
    # verifies the clients' certificates and answers them itself, as in production.
    tls_alerts: bool = True
    # Superseded versions older than this leave the change log (exchange/retention.py); 0 keeps all.
    change_retention_days: int = DEFAULT_RETENTION_DAYS
    compact_every_s: float = 3600
    # How often new inbox items are posted to the departments' webhooks (exchange/inbox_webhooks.py).
    inbox_notify_every_s: float = 10
    # Uploaded files (exchange/uploads.py): the largest body, and rows in a CSV file and a workbook
    # (413 beyond them); where the body is spooled while it is read (the system's temporary folder).
    upload_max_bytes: int = UPLOAD_MAX_BYTES
    upload_max_rows: int = UPLOAD_MAX_ROWS
    upload_max_workbook_rows: int = UPLOAD_MAX_WORKBOOK_ROWS
    upload_total_s: float = 1800
    upload_dir: Path | None = None
