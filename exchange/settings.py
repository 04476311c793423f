"""The exchange's settings, from the environment (GDX_*) or the `gdx exchange serve` options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    database_url: str
    tls_cert: Path
    tls_key: Path
    ca_cert: Path
    calendar_file: Path | None = None
    pool_min: int = 2
    pool_max: int = 10
    timezone: str = "Asia/Shanghai"  # working days and due dates are counted in Beijing time

    @classmethod
    def from_env(cls) -> Settings:
        def required(name: str) -> str:
            value = os.environ.get(name)
            if not value:
                raise SystemExit(f"{name} is not set; see `gdx exchange serve --help`")
            return value

        calendar = os.environ.get("GDX_CALENDAR_FILE")
        return cls(
            database_url=required("GDX_DATABASE_URL"),
            tls_cert=Path(required("GDX_TLS_CERT")),
            tls_key=Path(required("GDX_TLS_KEY")),
            ca_cert=Path(required("GDX_CA_CERT")),
            calendar_file=Path(calendar) if calendar else None,
            pool_min=int(os.environ.get("GDX_POOL_MIN", "2")),
            pool_max=int(os.environ.get("GDX_POOL_MAX", "10")),
        )
