"""The exchange's settings, as `gdx exchange serve` gathers them from options or GDX_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exchange.limits import DEFAULT_BODY_IDLE_S, DEFAULT_BODY_TOTAL_S, DEFAULT_MAX_BODY_BYTES
from exchange.object_store import ObjectStoreError, ObjectStoreSettings
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
    # The files of resources of format file: in an S3-compatible object store when a bucket is named
    # (exchange/object_store.py), else in PostgreSQL.
    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "gdx-files/"
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_ca_file: Path | None = None

    def object_store(self) -> ObjectStoreSettings | None:
        if self.s3_bucket is None:
            return None
        endpoint, access_key, secret_key = self.s3_endpoint or "", self.s3_access_key or "", self.s3_secret_key or ""
        missing = [name for name, value in (("endpoint", endpoint), ("access key", access_key),
                                            ("secret key", secret_key)) if not value]  # fmt: skip
        if missing:
            raise ObjectStoreError(f"the object store's bucket is set, its {' and '.join(missing)} not")
        return ObjectStoreSettings(endpoint, self.s3_bucket, access_key, secret_key, self.s3_prefix, self.s3_region,
                                   self.s3_ca_file)  # fmt: skip
