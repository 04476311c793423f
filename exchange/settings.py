"""The exchange's settings, as `gdx exchange serve` gathers them from options or GDX_* variables."""

from __future__ import annotations

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
