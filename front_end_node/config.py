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

import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gdx.protocol import CODE_PATTERN, DEPARTMENT_PATTERN

# Table and column names go into SQL text (they cannot be bound parameters), so only plain
# identifiers, optionally schema-qualified, are accepted.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
COLUMN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class ConfigError(Exception):
    """The config file is unusable; the message names every bad setting."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeSettings(_Strict):
    url: str = Field(pattern=r"^https://", description="The central exchange's base URL (https only)")
    ca: Path
    cert: Path
    key: Path
    timeout_s: float = Field(default=30, gt=0)


class BusinessDb(_Strict):
    kind: Literal["postgresql", "mariadb", "mysql"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    name: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: str | None = None
    password_file: Path | None = None
    timezone: str = Field(default="Asia/Shanghai", description="The zone of timestamps stored without one")
    heartbeat_table: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="A table the agent may write heartbeats to; without it the business DB is only read",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
        return value

    def secret(self) -> str:
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"business_db.password_file: cannot read {self.password_file}: {exc.strerror}"
                ) from None
        return self.password or ""


class Publication(_Strict):
    resource: str = Field(pattern=CODE_PATTERN)
    table: str = Field(pattern=IDENTIFIER)
    change_column: str | None = Field(
        default=None,
        pattern=COLUMN,
        description="A column that grows on every insert and update (timestamp or number); "
        "without one the table is compared key by key every compare_interval_s",
    )
    lookback_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a writing transaction may stay open after setting the change column: "
        "settled ranges are checked again for such late commits",
    )
    compare_interval_s: float | None = Field(
        default=None, gt=0, description="Keyed comparison (finds deletions); default 60 s, or 300 s without a column"
    )
    catalog_check_interval_s: float = Field(
        default=300,
        ge=1,
        le=86400,
        description="How often the catalog entry is read again: a schema version with fields added or "
        "dropped is followed without a restart",
    )

    def compare_every(self) -> float:
        if self.compare_interval_s is not None:
            return self.compare_interval_s
        return 60.0 if self.change_column else 300.0


class Subscription(_Strict):
    resource: str = Field(pattern=CODE_PATTERN)
    purpose: str = Field(min_length=2, max_length=500)
    table: str | None = Field(default=None, pattern=IDENTIFIER, description="Default: the resource code")
    grant_check_interval_s: float = Field(
        default=300,
        ge=1,
        le=86400,
        description="How often the grant is read again: a narrower or wider grant takes effect without a restart",
    )

    def table_name(self) -> str:
        return self.table or "sub_" + re.sub(r"[^a-z0-9_]", "_", self.resource)


class Listen(_Strict):
    host: str = "0.0.0.0"  # noqa: S104 - the health port is firewalled to the monitoring network
    port: int = Field(default=9470, ge=1, le=65535)
    tls: bool = Field(
        default=True, description="Serve over TLS with the node certificate (the monitor checks the handshake)"
    )


class NodeConfig(_Strict):
    department: str = Field(pattern=DEPARTMENT_PATTERN)
    exchange: ExchangeSettings
    front_end_db: str = Field(min_length=1, description="psycopg connection string of the front-end database")
    business_db: BusinessDb | None = None
    publishes: list[Publication] = Field(default_factory=list)
    subscribes: list[Subscription] = Field(default_factory=list)
    listen: Listen = Listen()
    batch_size: int = Field(default=2000, ge=1, le=5000)
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
