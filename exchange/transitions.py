"""Share requests and disputes: records that are opened, then move from state to state.

Each step is the row's INSERT or UPDATE, the audit entry that records who took it and why (the
record's id in its scope), and the record read back as the API shows it, all in the caller's
transaction (so all or nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from exchange import audit
from exchange.identity import Principal

Conn = psycopg.AsyncConnection[Any]
T = TypeVar("T")
Loader = Callable[[Conn, int], Awaitable[T]]

# A column set to the transaction's time (replied_at, resolved_at, ...).
NOW = sql.SQL("now()")
# The kinds of record, and their tables.
TABLES = {"request": "share_request", "dispute": "dispute"}


async def create(
    conn: Conn,
    who: Principal,
    action: str,
    kind: str,
    values: Mapping[str, Any],
    *,
    load: Loader[T],
    resource: str,
    purpose: str | None = None,
    scope: dict[str, Any],
) -> T:
    """Insert a record of ``kind`` with ``values`` (column -> value), audit ``action``, return it."""
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(_table(kind)),
        sql.SQL(", ").join(sql.Identifier(column) for column in values),
        sql.SQL(", ").join(sql.Placeholder() for _ in values),
    )
    row = await (await conn.execute(statement, list(values.values()))).fetchone()
    assert row is not None
    return await _audited(conn, who, action, kind, row[0], load, resource, purpose, scope)


async def transition(
    conn: Conn,
    who: Principal,
    action: str,
    kind: str,
    record_id: int,
    changes: Mapping[str, Any],
    *,
    load: Loader[T],
    resource: str,
    purpose: str | None = None,
    scope: dict[str, Any],
) -> T:
    """Set ``changes`` (column -> value, or NOW) on the record, audit ``action``, return it."""
    values = [value for value in changes.values() if value is not NOW]
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(column), NOW if value is NOW else sql.Placeholder())
        for column, value in changes.items()
    )
    statement = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(sql.Identifier(_table(kind)), assignments)
    await conn.execute(statement, [*values, record_id])
    return await _audited(conn, who, action, kind, record_id, load, resource, purpose, scope)


def _table(kind: str) -> str:
    if kind not in TABLES:
        raise ValueError(f"{kind!r} is not a kind of record with states (known: {', '.join(TABLES)})")
    return TABLES[kind]


async def _audited(
    conn: Conn,
    who: Principal,
    action: str,
    kind: str,
    record_id: int,
    load: Loader[T],
    resource: str,
    purpose: str | None,
    scope: dict[str, Any],
) -> T:
    await audit.record(conn, who, action, resource=resource, purpose=purpose, scope={kind: record_id, **scope})
    return await load(conn, record_id)
