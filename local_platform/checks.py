"""Does the consumer hold what the providers hold? For each subscription, the granted fields of the
provider's business table and of the subscriber's table in its front-end database, each row put in
one text form (timestamps in UTC to the microsecond, dates ISO, NULL as None) and digested.

The subscriber's database listens only inside its node (as on a real front-end server), so its rows
are read there with psql."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gdx.workdays import BEIJING
from local_platform import business
from local_platform.catalog import RESOURCES
from local_platform.podman import podman
from local_platform.state import LocalState
from local_platform.topology import DEPARTMENTS, Department, PlannedSubscription, provider_of

_UTC_TEXT = "%Y-%m-%dT%H:%M:%S.%f"


@dataclass(frozen=True)
class Digest:
    rows: int
    sha256: str


@dataclass(frozen=True)
class Comparison:
    resource: str
    consumer: str
    fields: tuple[str, ...]
    source: Digest
    subscriber: Digest | None  # None: the subscriber's table does not exist yet

    @property
    def equal(self) -> bool:
        return self.subscriber == self.source


def granted_fields(sub: PlannedSubscription) -> tuple[str, ...]:
    spec = RESOURCES[sub.resource]
    return sub.approved or tuple(f["name"] for f in spec["fields"])


def compare(state: LocalState) -> list[Comparison]:
    found = []
    for consumer in DEPARTMENTS:
        for sub in consumer.subscribes:
            fields = granted_fields(sub)
            found.append(
                Comparison(
                    resource=sub.resource,
                    consumer=consumer.id,
                    fields=fields,
                    source=digest(source_rows(sub.resource, fields, state)),
                    subscriber=_maybe_digest(subscriber_rows(consumer, sub, fields)),
                )
            )
    return found


def digest(rows: list[tuple[str | None, ...]]) -> Digest:
    ordered = sorted(rows, key=lambda row: row[0] or "")
    text = "\n".join("\t".join("\\N" if v is None else v for v in row) for row in ordered)
    return Digest(len(ordered), hashlib.sha256(text.encode()).hexdigest())


def _maybe_digest(rows: list[tuple[str | None, ...]] | None) -> Digest | None:
    return None if rows is None else digest(rows)


def canonical(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        # As the agent reads a timestamp stored without a zone.
        aware = value.replace(tzinfo=BEIJING) if value.tzinfo is None else value
        return aware.astimezone(dt.UTC).strftime(_UTC_TEXT)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def source_rows(resource: str, fields: Sequence[str], state: LocalState) -> list[tuple[str | None, ...]]:
    db = provider_of(resource).business_db
    assert db is not None
    columns = ", ".join(fields)
    with business.connect(db, state) as conn:
        if db.kind == "postgresql":
            rows = conn.execute(f"SELECT {columns} FROM {db.table}".encode()).fetchall()  # noqa: S608 - topology
        else:
            with conn.cursor() as cur:
                cur.execute(f"SELECT {columns} FROM {db.table}")  # noqa: S608 - names from the topology
                rows = cur.fetchall()
    return [tuple(canonical(v) for v in row) for row in rows]


def subscriber_rows(
    consumer: Department, sub: PlannedSubscription, fields: Sequence[str]
) -> list[tuple[str | None, ...]] | None:
    """None while the table does not exist (the agent makes it on its first pull)."""
    types = {f["name"]: f["type"] for f in RESOURCES[sub.resource]["fields"]}
    select = ", ".join(_as_text(name, types[name]) for name in fields)
    sql = f"COPY (SELECT {select} FROM {sub.table}) TO STDOUT"  # noqa: S608 - names from the catalog
    done = podman(
        "exec", consumer.host, "runuser", "-u", "postgres", "--",
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "gdx_frontend", "-c", sql,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        if "does not exist" in done.stderr:
            return None
        raise RuntimeError(f"reading {sub.table} in {consumer.host}: {done.stderr.strip()}")
    return [tuple(None if v == "\\N" else v for v in line.split("\t")) for line in done.stdout.splitlines() if line]


def _as_text(name: str, ftype: str) -> str:
    if ftype == "timestamp":
        return f"""to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')"""
    return f"{name}::text"
