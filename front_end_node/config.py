"""The node's config file: one YAML file per front-end node, written by Ansible's agent role.

Example (docs/front-end-node.md has the full reference)::

    department: zjg-gaj
    exchange:
      url: https://exchange.example.gov.cn:8443
      ca: /etc/gdx/ca.crt
      cert: /etc/gdx/node.crt
      key: /etc/gdx/node.key
    front_end_db: postgresql://gdx_agent@/gdx_frontend?host=/var/run/postgresql
    business_db: {kind: postgresql, host: 10.1.2.3, port: 5432, name: hukou, user: gdx_reader,
                  password_file: /etc/gdx/business-db.password}
    publishes:
      - {resource: zjg-gaj.population, table: population, change_column: updated_at}
    subscribes:
      - {resource: zjg-scjgj.legal-entity, purpose: 企业登记信息核验, table: legal_entity}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from gdx.protocol import DEPARTMENT_PATTERN

# What a node shares is stated with the inventory's own models (gdx/sharing.py).
from gdx.sharing import BusinessDb, ConfigError, Publication, Strict, Subscription

__all__ = ["ConfigError", "ExchangeSettings", "NodeConfig", "load_config"]


class ExchangeSettings(Strict):
    url: str = Field(pattern=r"^https://", description="The central exchange's base URL (https only)")
    ca: Path
    cert: Path
    key: Path
    timeout_s: float = Field(default=30, gt=0)


class Listen(Strict):
    host: str = "0.0.0.0"  # noqa: S104 - the health port is firewalled to the monitoring network
    port: int = Field(default=9470, ge=1, le=65535)
    tls: bool = Field(
        default=True, description="Serve over TLS with the node certificate (the monitor checks the handshake)"
    )


class NodeConfig(Strict):
    department: str = Field(pattern=DEPARTMENT_PATTERN)
    exchange: ExchangeSettings
    front_end_db: str = Field(min_length=1, description="psycopg connection string of the front-end database")
    business_db: BusinessDb | None = None
    publishes: list[Publication] = Field(default_factory=list)
    subscribes: list[Subscription] = Field(default_factory=list)
    listen: Listen = Listen()
    batch_size: int = Field(default=2000, ge=1, le=5000)
    snapshot_rows: int = Field(
        default=50_000, ge=100, le=200_000, description="Rows per chunk of a subscription's first load (snapshot)"
    )
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    max_backoff_s: float = Field(default=30.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    disks: list[Path] = Field(
        default_factory=lambda: [Path("/")], description="File systems whose free space /healthz reports"
    )

    @model_validator(mode="after")
    def _consistent(self) -> NodeConfig:
        if self.publishes and self.business_db is None:
            raise ValueError("publishes needs business_db (where the published tables are read from)")
        codes = [p.resource for p in self.publishes]
        if len(set(codes)) != len(codes):
            raise ValueError("a resource is published twice")
        tables = [s.table_name() for s in self.subscribes]
        if len(set(tables)) != len(tables):
            raise ValueError("two subscriptions write to the same table")
        return self

    def publication(self, resource: str) -> Publication:
        for pub in self.publishes:
            if pub.resource == resource:
                return pub
        known = ", ".join(p.resource for p in self.publishes) or "none"
        raise ConfigError(f"this node does not publish {resource!r} (it publishes: {known})")


def load_config(path: Path) -> NodeConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return NodeConfig.model_validate(data or {})
    except ValidationError as exc:
        lines = [f"  - {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path}: {len(lines)} problem(s):\n" + "\n".join(lines)) from None
