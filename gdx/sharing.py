"""What a department's front-end node shares: its business database, the resources it publishes
from it, the resources it subscribes to.

One set of models for every place that states them: the inventory (``gdx_business_db``,
``gdx_publishes``, ``gdx_subscribes``), the node's config file that Ansible writes from it, and the
local platform's topology. A setting checked here is checked the same way in all three.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gdx.protocol import CODE_PATTERN
from gdx.workdays import BEIJING

# Table and column names go into SQL text (they cannot be bound parameters), so only plain
# identifiers, optionally schema-qualified, are accepted.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
COLUMN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class ConfigError(Exception):
    """A setting is unusable; the message names every bad one."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseAddress(Strict):
    """Where a business database is and how to read it; its secret is stated by each user of it."""

    kind: Literal["postgresql", "mariadb", "mysql"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    name: str = Field(min_length=1)
    user: str = Field(min_length=1)
    timezone: str = Field(default=BEIJING.key, description="The zone of timestamps stored without one")
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


class BusinessDb(DatabaseAddress):
    """The business database as the agent reads it: the password in a file Ansible writes."""

    password: str | None = None
    password_file: Path | None = None

    def secret(self) -> str:
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"business_db.password_file: cannot read {self.password_file}: {exc.strerror}"
                ) from None
        return self.password or ""


class Publication(Strict):
    resource: str = Field(pattern=CODE_PATTERN)
    table: str = Field(pattern=IDENTIFIER)
    change_column: str | None = Field(
        default=None,
        pattern=COLUMN,
        description="A column that grows on every insert and update (timestamp or number); "
        "without one the table is compared key by key every compare_interval_s",
    )
    capture: Literal["poll", "log"] = Field(
        default="poll",
        description="How changes are found: poll (the change column, and a keyed comparison for deletions) or "
        "log (PostgreSQL's write-ahead log through a replication slot: every insert, update and deletion "
        "in commit order; the DBA's checklist is in docs/front-end-node.md)",
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


class Subscription(Strict):
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
